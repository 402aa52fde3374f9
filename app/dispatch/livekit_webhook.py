"""``POST /livekit/webhook``: LiveKit server webhooks as the third door.

A stock LiveKit server posts room and participant events to the URLs in its ``webhook:``
configuration, signed with its API key/secret. Verified events that match a
:class:`~app.dispatch.config.DispatchRule` dispatch our agent into the room through the same
:meth:`Admission.admit` as every door (``source="livekit_webhook"``, no token: the manager mints
one). The job id is ``LW_<event id>``, so a redelivered event is idempotent in the manager too;
event ids are also remembered here for a window, and a redelivery gets the first answer again.

Answers: 401 bad or missing signature (also expired or tampered), 413 too large, 400 not a
webhook event, 200 for everything verified (``status``: ``dispatched``, ``duplicate``,
``ignored`` or ``refused``), 503 with ``Retry-After`` when no capacity is left (not remembered,
so the server's retry can succeed).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from agents.job import valid_job_id
from app.admission import Admission, JobRequest
from app.api.errors import contract_error_response
from app.dispatch.config import DispatchRule, LiveKitWebhookSettings
from app.dispatch.ports import DispatchError, WebhookPayloadError, WebhookVerificationError
from app.dispatch.webhook_verify import ConstantTimeWebhookReceiver, EventDeduplicator
from app.security.failures import FailureLimiter

log = structlog.get_logger("app.dispatch.livekit_webhook")

WEBHOOK_PATH = "/livekit/webhook"


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    body: dict[str, Any]
    retry_after: int | None = None


def match_rule(rules: list[DispatchRule], event: WebhookEvent) -> DispatchRule | None:
    """The first rule the event matches, or ``None``."""
    for rule in rules:
        if rule.event != event.event or not fnmatchcase(event.room.name, rule.room_pattern):
            continue
        if rule.event == "participant_joined":
            p = event.participant
            if not p.identity or not fnmatchcase(p.identity, rule.participant_pattern):
                continue
            if not rule.include_agents and p.kind == models.ParticipantInfo.Kind.AGENT:
                continue
            if any(p.identity.startswith(prefix) for prefix in rule.exclude_identity_prefixes):
                continue
        return rule
    return None


def job_id_for(event_key: str) -> str:
    return f"LW_{event_key}"


def job_request_for(event: WebhookEvent, rule: DispatchRule, *, body: bytes) -> JobRequest:
    """The job a matched event asks for. Its id derives from the event id (or, for an event
    without one, from the body), so a redelivery maps to the same job."""
    key = event.id or "h" + hashlib.sha256(body).hexdigest()[:24]
    job_type = rule.effective_job_type()
    identity = event.participant.identity if job_type != "JT_ROOM" else None
    return JobRequest(
        source="livekit_webhook",
        job_id=job_id_for(key),
        dispatch_id=event.id or key,
        job_type=job_type,
        room_name=event.room.name,
        room_sid=event.room.sid,
        participant_identity=identity,
        metadata=rule.metadata,
        access_token=None,
        server_url=None,
    )


class LiveKitWebhookHandler:
    """Framework-free core of the endpoint: verification, dedup, rules, admission."""

    def __init__(
        self,
        *,
        settings: LiveKitWebhookSettings,
        api_key: str,
        api_secret: str,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._wall_clock = wall_clock
        self._receiver = ConstantTimeWebhookReceiver(
            api_key=api_key,
            api_secret=api_secret,
            leeway=settings.token_leeway,
            max_token_lifetime=settings.max_event_age,
            wall_clock=wall_clock,
        )
        dedup_kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self._dedup = EventDeduplicator(
            window=settings.dedup_window, max_entries=settings.dedup_max_entries, **dedup_kwargs
        )

    async def handle(
        self, body: bytes, authorization: str | None, *, admission: Admission
    ) -> WebhookAnswer:
        if len(body) > self.settings.max_body_bytes:
            return _error(413, "body too large")
        try:
            event = self._receiver.receive_bytes(body, authorization)
        except WebhookVerificationError as e:
            log.warning("livekit_webhook_unverified", error=e.message)
            return _error(401, e.message)
        except WebhookPayloadError as e:
            log.warning("livekit_webhook_bad_payload", error=e.message)
            return _error(400, e.message)

        if event.id and not valid_job_id(job_id_for(event.id)):
            log.warning("livekit_webhook_invalid_event_id", event_id=event.id[:64])
            return _error(422, "invalid event id (the job id LW_<id> must be a valid job id)")
        problem = self._age_problem(event)
        if problem is not None:
            log.warning("livekit_webhook_refused_event", error=problem, event_id=event.id)
            return _error(400, problem)
        ctx = {"livekit_event": event.event, "event_id": event.id, "room": event.room.name}
        if event.id:
            first = self._dedup.get(event.id)
            if first is not None:
                log.info("livekit_webhook_redelivered", **ctx)
                return WebhookAnswer(200, {**first, "redelivered": True})

        answer = await self._decide(event, body, admission, ctx)
        if event.id and answer.status == 200:
            self._dedup.remember(event.id, answer.body)
        return answer

    def _age_problem(self, event: WebhookEvent) -> str | None:
        """Events older than the dedup memory (or from the future) are refused: a replay of a
        captured one can then never be dispatched twice."""
        if event.created_at <= 0:
            return "event has no createdAt"
        age = self._wall_clock() - event.created_at
        if age > self.settings.max_event_age:
            return "event too old (createdAt is outside the replay window)"
        if age < -self.settings.token_leeway:
            return "event from the future (createdAt)"
        return None

    async def _decide(
        self, event: WebhookEvent, body: bytes, admission: Admission, ctx: dict[str, str]
    ) -> WebhookAnswer:
        rule = match_rule(self.settings.rules, event)
        if rule is None:
            log.debug("livekit_webhook_ignored", **ctx)
            return WebhookAnswer(
                200, {"accepted": False, "status": "ignored", "event_id": event.id or None}
            )
        if not event.room.name:
            log.warning("livekit_webhook_no_room", **ctx)
            return WebhookAnswer(
                200, {"accepted": False, "status": "ignored", "error": "event has no room name"}
            )
        request = job_request_for(event, rule, body=body)
        try:
            result = await admission.admit(request)
        except Exception as e:
            log.exception("livekit_webhook_admission_failed", job_id=request.job_id, **ctx)
            return _error(503, f"admission failed: {type(e).__name__}", retry_after=5)
        log.info(
            "livekit_webhook_dispatch",
            job_id=request.job_id,
            job_type=request.job_type,
            participant=request.participant_identity,
            verdict=result.verdict,
            error=result.error,
            **ctx,
        )
        if result.verdict == "busy":
            return _error(503, result.error or "no capacity", retry_after=result.retry_after or 5)
        if result.verdict == "refused":
            return WebhookAnswer(
                200,
                {
                    "accepted": False,
                    "status": "refused",
                    "job_id": request.job_id,
                    "error": result.error or "refused",
                },
            )
        return WebhookAnswer(
            200,
            {
                "accepted": True,
                "status": "dispatched" if result.verdict == "accepted" else "duplicate",
                "job_id": request.job_id,
                "participant_identity": result.participant_identity,
            },
        )


def _error(status: int, message: str, *, retry_after: int | None = None) -> WebhookAnswer:
    return WebhookAnswer(status, {"accepted": False, "error": message}, retry_after)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The raw body, or ``None`` as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _response(answer: WebhookAnswer) -> Response:
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
    return Response(
        content=json.dumps(answer.body, separators=(",", ":")),
        status_code=answer.status,
        media_type="application/json",
        headers=headers,
    )


def build_livekit_webhook_router(
    *,
    handler: LiveKitWebhookHandler,
    get_admission: Callable[[Request], Admission],
    get_limiter: Callable[[Request], FailureLimiter] | None = None,
    path: str = WEBHOOK_PATH,
) -> APIRouter:
    """The router. ``handler`` holds this app's dedup memory (build one per app);
    ``get_admission`` finds the job manager for a request (e.g. on ``app.state``), and
    ``get_limiter`` the per-source limit on failed token checks (none: no limit)."""
    router = APIRouter(tags=["livekit"])

    @router.post(
        path,
        name="livekit_webhook",
        responses={
            400: contract_error_response(
                "Not a LiveKit webhook event, or outside the replay window"
            ),
            401: contract_error_response("Missing, invalid, expired or tampered token"),
            413: contract_error_response("Body too large"),
            422: contract_error_response("The event id makes no valid job id"),
            429: contract_error_response("Too many failed token checks from this source"),
            503: contract_error_response("No capacity, draining or starting; see Retry-After"),
        },
    )
    async def livekit_webhook(request: Request) -> Response:
        limiter = get_limiter(request) if get_limiter is not None else None
        source = ""
        if limiter is not None:
            source = limiter.source(request.scope.get("client"), request.scope["headers"])
            wait = limiter.retry_after(source)
            if wait is not None:  # no token check: this source failed too often
                return _response(
                    _error(429, "too many failed signature checks", retry_after=wait)
                )
        body = await _read_capped(request, handler.settings.max_body_bytes)
        if body is None:
            return _response(_error(413, "body too large"))
        try:
            admission = get_admission(request)
        except DispatchError as e:
            return _response(_error(503, e.message, retry_after=5))
        answer = await handler.handle(
            body, request.headers.get("authorization"), admission=admission
        )
        if answer.status == 401 and limiter is not None:
            limiter.failed(source)
        return _response(answer)

    return router
