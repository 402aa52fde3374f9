"""``GET /health``, ``GET /ready`` and ``GET /metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest

from app.api.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health(runtime: RuntimeDep) -> dict[str, Any]:
    """Liveness: the process answers. Says whether it drains and how many jobs run."""
    manager = runtime.manager
    return {
        "status": "draining" if manager.draining else "ok",
        "uptime": round(runtime.uptime, 3),
        "active_jobs": manager.active_jobs,
        "max_jobs": manager.max_jobs,
        "draining": manager.draining,
        "registry": runtime.registry.problem or "ok",
    }


@router.get(
    "/ready",
    responses={
        503: {
            "description": "Starting, draining, unhealthy (the agent cannot hear its callers),"
            " or the shared job registry (Redis) unreachable or recovering: send no new jobs here"
        }
    },
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: 200 while new jobs are welcome; 503 while starting, draining or while the
    shared job registry is unreachable or recovering (the reason says which)."""
    problem = runtime.registry.problem
    if runtime.ready and not runtime.manager.draining and problem is None:
        return JSONResponse({"ready": True})
    if runtime.unhealthy is not None:
        reason = runtime.unhealthy
    elif runtime.manager.draining:
        reason = "draining"
    elif not runtime.ready:
        reason = "starting"
    else:
        reason = problem or "starting"
    return JSONResponse({"ready": False, "reason": reason}, status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(runtime: RuntimeDep) -> Response:
    # The service's own series, then the agent's (per-turn latency, vision) when it has any.
    body = runtime.metrics.render() + b"".join(
        generate_latest(registry) for registry in runtime.agent_metrics
    )
    return Response(content=body, media_type=runtime.metrics.content_type)
