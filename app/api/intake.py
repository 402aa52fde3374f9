"""``POST /livekit/agent`` (path from settings): the signed job notification webhook."""

from __future__ import annotations

import json
import time

import structlog
from fastapi import APIRouter, Request, Response

from app.errors import IntakeError
from app.intake.pipeline import IntakeAnswer, error_answer, handle_notification
from app.runtime import Runtime

log = structlog.get_logger("app.intake")


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise IntakeError(400, "invalid Content-Length", outcome="bad_request")
        if int(declared) > limit:
            raise IntakeError(413, "body too large", outcome="too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IntakeError(413, "body too large", outcome="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


_SIGNATURE_HEADERS = frozenset(
    {
        b"x-livekit-signature",
        b"x-livekit-timestamp",
        b"webhook-id",
        b"webhook-timestamp",
        b"webhook-signature",
    }
)


def signature_headers(request: Request) -> dict[str, str]:
    """The signature headers only, from the raw ASGI list (names are lowercase there); the
    first occurrence of a repeated header wins."""
    found: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        if name in _SIGNATURE_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _response(answer: IntakeAnswer) -> Response:
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
    return Response(
        content=json.dumps(answer.body, separators=(",", ":")),
        status_code=answer.status,
        media_type="application/json",
        headers=headers,
    )


def build_intake_router(path: str) -> APIRouter:
    """The webhook is a plain Starlette route: it reads the raw body itself (signatures are over
    the bytes), so FastAPI's parameter solving and response validation would be pure cost."""
    router = APIRouter(tags=["intake"])
    router.add_route(path, job_notification, methods=["POST"], name="job_notification")
    return router


async def job_notification(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    started = time.perf_counter()
    notification = None
    try:
        body = await read_capped(request, runtime.intake_policy.max_body_bytes)
    except IntakeError as e:
        answer = error_answer(e)
    else:
        answer, notification = await handle_notification(
            body,
            signature_headers(request),
            policy=runtime.intake_policy,
            admission=runtime.manager,
            now=time.time(),
        )
    runtime.metrics.webhook(answer.outcome)
    runtime.metrics.accepted_in("webhook", time.perf_counter() - started)
    if answer.outcome not in ("accepted", "duplicate"):
        log.info(
            "job_notification_refused",
            status=answer.status,
            outcome=answer.outcome,
            error=answer.body.get("error"),
            job_id=notification.job_id if notification else None,
            room=notification.room.name if notification else None,
            dispatch_id=notification.dispatch_id if notification else None,
        )
    elif answer.outcome == "duplicate" and notification is not None:
        log.info("job_notification_duplicate", job_id=notification.job_id)
    return _response(answer)
