"""The browser playground: ``GET /playground`` (the page), ``GET /playground/info`` (what the
page may offer) and ``POST /playground/session`` (a room, a caller token, and the agent
dispatched into the room).

Available in development mode, or with ``playground.token`` configured (then every request but
the page itself needs ``Authorization: Bearer <token>``); otherwise 404, so it is never open by
default in production. A session is a job like any other: it is a :class:`JobRequest` with
``source="playground"`` given to the same :meth:`Admission.admit` as every door, so capacity,
draining and policy answer the same way (503 with ``Retry-After`` when full).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agents.overrides import JobOverrides
from app.admission import JobRequest
from app.api.deps import RuntimeDep, bearer_matches
from app.api.errors import detail_response
from app.errors import TokenMintError
from app.jobs.tokens import mint_caller_token
from app.runtime import Runtime
from app.web import STATIC_DIR

log = structlog.get_logger("app.api.playground")

_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "retry_after": {}},
            }
        }
    }
}
router = APIRouter(
    tags=["playground"],
    responses={
        401: detail_response("Not allowed"),
        404: detail_response("The playground is off"),
        409: {"description": "No LiveKit server, or the job was refused", **_ERROR},
        503: {"description": "No capacity; retry after retry_after seconds", **_ERROR},
    },
)

ROOM_PREFIX = "playground-"
JOB_PREFIX = "PG_"
CALLER_PREFIX = "caller-"


class PlaygroundPersona(JobOverrides):
    """The persona fields a session may set: exactly the metadata allowlist (PROTOCOL.md §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    persona: PlaygroundPersona = Field(default_factory=PlaygroundPersona)
    name: str = Field("Playground caller", min_length=1, max_length=64)


def require_playground(request: Request, runtime: RuntimeDep) -> Runtime:
    settings = runtime.settings
    playground = settings.playground
    if not playground.available(dev_mode=settings.dev_mode):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the playground is off")
    if playground.token is not None and not bearer_matches(request, playground.token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "playground bearer token required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return runtime


PlaygroundDep = Annotated[Runtime, Depends(require_playground)]


def _error(code: int, message: str, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"error": message, "retry_after": retry_after}, code, headers=headers)


@router.get("/playground", include_in_schema=False)
async def playground_page(runtime: RuntimeDep) -> FileResponse:
    settings = runtime.settings
    if not settings.playground.available(dev_mode=settings.dev_mode):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the playground is off")
    return FileResponse(STATIC_DIR / "playground.html", media_type="text/html")


@router.get("/playground/info")
async def playground_info(runtime: PlaygroundDep) -> dict[str, Any]:
    """What the page offers: the configured persona as defaults, and whether vision is on."""
    settings = runtime.settings
    persona = settings.agent.persona
    return {
        "vision": settings.agent.wants_video,
        "persona": {
            "greeting": persona.greeting or "",
            "instructions": persona.instructions,
            "voice": persona.voice or "",
            "todo_items": [item.model_dump() for item in persona.todo_items],
        },
        "max_jobs": runtime.manager.max_jobs,
    }


@router.post("/playground/session", status_code=status.HTTP_201_CREATED, response_model=None)
async def create_session(
    runtime: PlaygroundDep, body: SessionRequest
) -> dict[str, Any] | JSONResponse:
    settings = runtime.settings
    server_url = settings.livekit_url
    if not server_url:
        return _error(409, "the playground needs a LiveKit server (LIVEKIT_URL)")
    suffix = secrets.token_hex(6)
    room, job_id, identity = ROOM_PREFIX + suffix, JOB_PREFIX + suffix, CALLER_PREFIX + suffix
    try:
        token = mint_caller_token(
            api_key=settings.livekit_api_key,
            api_secret=settings.livekit_api_secret,
            room=room,
            identity=identity,
            name=body.name,
            ttl_seconds=settings.playground.caller_token_ttl,
        )
    except TokenMintError as e:
        return _error(409, e.message)
    persona = body.persona.model_dump(mode="json", exclude_none=True)
    request = JobRequest(
        source="playground",
        job_id=job_id,
        dispatch_id="PD_" + suffix,
        job_type="JT_ROOM",
        room_name=room,
        metadata=json.dumps(persona) if persona else "",
        access_token=None,
        server_url=server_url,
    )
    started = time.perf_counter()
    result = await runtime.manager.admit(request)
    runtime.metrics.accepted_in("playground", time.perf_counter() - started)
    log.info("playground_session", job_id=job_id, room=room, verdict=result.verdict,
             error=result.error)
    if result.verdict == "busy":
        return _error(503, result.error or "busy", retry_after=result.retry_after)
    if not result.accepted:
        return _error(409, result.error or "refused")
    return {
        "job_id": job_id,
        "room": room,
        "server_url": settings.playground.public_url or server_url,
        "token": token,
        "identity": identity,
        "agent_identity": result.participant_identity,
    }
