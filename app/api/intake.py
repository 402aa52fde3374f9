"""``POST /livekit/agent`` (path from settings): the signed job notification webhook.

The endpoint is a bare ASGI app routed by the FastAPI app (a Starlette :class:`Route` whose
endpoint is a :class:`JobNotificationEndpoint`), so the app's middleware (error handling,
telemetry) still applies. It reads the raw body itself (signatures are over the bytes) and
answers with bytes the pipeline already serialised: no ``Request``/``Response`` objects, no
dependency solving, no response validation, all of which would be pure cost on the hottest path
of the service. Being a plain route, FastAPI leaves it out of the generated OpenAPI schema;
:func:`intake_openapi` adds it back by hand.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.api.errors import contract_error_response
from app.errors import IntakeError, ServiceError
from app.intake.pipeline import (
    IntakeAnswer,
    error_answer,
    handle_notification,
    rate_limited_answer,
)
from app.intake.schema import JobNotification
from app.runtime import Runtime

log = structlog.get_logger("app.intake")

_SIGNATURE_HEADERS = {
    name.encode(): name
    for name in (
        "x-livekit-signature",
        "x-livekit-timestamp",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    )
}
_JSON = b"application/json"


class ClientGone(ServiceError):
    """The client disconnected before its whole body arrived: there is no one to answer."""

    retryable = True


def request_headers(scope: Scope) -> tuple[bytes | None, dict[str, str]]:
    """``Content-Length`` (raw) and the signature headers, from the ASGI list in one pass (names
    are lowercase there); the first occurrence of a repeated header wins."""
    declared: bytes | None = None
    found: dict[str, str] = {}
    for raw, value in scope["headers"]:
        name = _SIGNATURE_HEADERS.get(raw)
        if name is not None:
            if name not in found:
                found[name] = value.decode("latin-1")
        elif raw == b"content-length" and declared is None:
            declared = value
    return declared, found


async def read_capped(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all: a declared
    ``Content-Length`` over the limit is refused before any read, a streamed body as soon as it
    passes the limit."""
    if declared is not None:
        if not declared.isdigit():
            raise IntakeError(400, "invalid Content-Length", outcome="bad_request")
        if int(declared) > limit:
            raise IntakeError(413, "body too large", outcome="too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone("client disconnected before the whole body arrived")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise IntakeError(413, "body too large", outcome="too_large")
        if not message.get("more_body", False):
            if not chunks:  # the usual case: the whole body in one message
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def send_answer(send: Send, answer: IntakeAnswer) -> None:
    headers = [
        (b"content-length", str(len(answer.content)).encode()),
        (b"content-type", _JSON),
    ]
    if answer.retry_after:
        headers.append((b"retry-after", str(answer.retry_after).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.content})


class JobNotificationEndpoint:
    """The webhook as an ASGI app. Every check of PROTOCOL.md §1 runs in
    :func:`app.intake.pipeline.handle_notification`; this class is the HTTP edge around it:
    the body, the signature headers, metrics, the refusal logs and the answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        started = time.perf_counter()
        policy = runtime.intake_policy
        limiter = runtime.auth_failures
        source = limiter.source(scope.get("client"), scope["headers"])
        declared, headers = request_headers(scope)
        notification = None
        wait = limiter.retry_after(source)
        if wait is not None:  # no body read, no HMAC: this source failed too often
            answer = rate_limited_answer(wait)
        else:
            try:
                body = await read_capped(receive, declared, policy.max_body_bytes)
            except IntakeError as e:
                answer = error_answer(e)
            except ClientGone:
                log.info("job_notification_abandoned")
                return
            else:
                answer, notification = await handle_notification(
                    body, headers, policy=policy, admission=runtime.manager, now=time.time()
                )
            if answer.outcome == "bad_signature":
                limiter.failed(source)
        runtime.metrics.webhook(answer.outcome)
        runtime.metrics.accepted_in("webhook", time.perf_counter() - started)
        if answer.outcome == "duplicate":
            if notification is not None:
                log.info("job_notification_duplicate", job_id=notification.job_id)
        elif answer.outcome != "accepted":
            log.info(
                "job_notification_refused",
                status=answer.status,
                outcome=answer.outcome,
                error=answer.error,
                job_id=notification.job_id if notification else None,
                room=notification.room.name if notification else None,
                dispatch_id=notification.dispatch_id if notification else None,
            )
        await send_answer(send, answer)


def intake_route(path: str) -> Route:
    """The webhook's route, for ``app.router.routes``."""
    return Route(path, JobNotificationEndpoint(), methods=["POST"], name="job_notification")


_SCHEMA_REF = "#/components/schemas/"


def _operation() -> dict[str, Any]:
    signature = {"in": "header", "required": False, "schema": {"type": "string"}}
    accepted = {
        "type": "object",
        "properties": {
            "accepted": {"type": "boolean"},
            "participant_identity": {"type": "string"},
            "participant_name": {"type": "string"},
            "participant_metadata": {"type": "string"},
            "error": {"type": "string"},
        },
        "required": ["accepted"],
    }
    return {
        "tags": ["intake"],
        "summary": "Job notification (HMAC-signed)",
        "description": "PROTOCOL.md §1. Signed over the raw body with X-LiveKit-Signature and "
        "X-LiveKit-Timestamp, or with the Standard Webhooks headers (docs/intake.md).",
        "operationId": "job_notification",
        "parameters": [
            {"name": name, **signature}
            for name in (
                "X-LiveKit-Signature",
                "X-LiveKit-Timestamp",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
            )
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF + "JobNotification"}}},
        },
        "responses": {
            "200": {
                "description": "Accepted (a retry of an accepted job_id gets the first answer "
                "again), or refused by policy with accepted: false",
                "content": {"application/json": {"schema": accepted}},
            },
            "400": contract_error_response("Body is not valid JSON"),
            "401": contract_error_response("Missing or invalid signature, or stale timestamp"),
            "413": contract_error_response("Body too large"),
            "422": contract_error_response("Schema errors", field_errors=True),
            "429": contract_error_response(
                "Too many failed signature checks from this source; retry after Retry-After"
            ),
            "503": contract_error_response(
                "At capacity or draining; retry after Retry-After seconds"
            ),
        },
    }


def intake_openapi(app: FastAPI, path: str) -> None:
    """Document the webhook in the app's OpenAPI schema (FastAPI leaves plain routes out). The
    body's nested models are named ``JobNotification<Model>`` there."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI's, cached until the routes change
        paths = schema.setdefault("paths", {})
        if path not in paths:
            body = JobNotification.model_json_schema(
                ref_template=_SCHEMA_REF + "JobNotification{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in body.pop("$defs", {}).items():
                components["JobNotification" + name] = model
            components["JobNotification"] = body
            paths[path] = {"post": _operation()}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
