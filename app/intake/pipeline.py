"""The order of checks on a job notification (PROTOCOL.md §1), independent of HTTP.

size → signature → timestamps → JSON → schema → admission (policy, idempotency, capacity).
Each failure is an :class:`IntakeError` with its HTTP status; nothing is spawned before the
admission says ``accepted``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from app.admission import Admission, AdmissionResult, JobRequest
from app.errors import IntakeError
from app.intake.schema import JobNotification
from app.security.signatures import check_timestamp, verify_signature


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    secrets: Sequence[SecretStr]
    max_body_bytes: int
    timestamp_tolerance: float


def _body_timestamp(obj: Any) -> int | float | None:
    """The body's ``timestamp`` when it is a number (or an int64 string); else ``None`` and the
    schema reports the problem."""
    if not isinstance(obj, dict):
        return None
    value = obj.get("timestamp")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def _field_errors(error: ValidationError) -> list[dict[str, Any]]:
    # Only location, message and type: the input may hold a token and is never echoed.
    return [
        {"loc": [str(part) for part in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def parse_notification(
    body: bytes, headers: Mapping[str, str], *, policy: IntakePolicy, now: float
) -> JobNotification:
    """Run every check up to the schema. ``headers`` keys must be lowercase."""
    if len(body) > policy.max_body_bytes:
        raise IntakeError(413, "body too large", outcome="too_large")
    verified = verify_signature(body, headers, policy.secrets)
    check_timestamp(verified.header_timestamp, now=now, tolerance=policy.timestamp_tolerance)
    try:  # fast path: one pass from bytes to model; the slow path below decides the error
        notification = JobNotification.model_validate_json(body)
    except ValidationError:
        pass
    else:
        check_timestamp(notification.timestamp, now=now, tolerance=policy.timestamp_tolerance)
        return notification
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise IntakeError(400, "body is not valid JSON", outcome="bad_json") from e
    body_ts = _body_timestamp(obj)
    if body_ts is not None:
        check_timestamp(body_ts, now=now, tolerance=policy.timestamp_tolerance)
    try:
        return JobNotification.model_validate(obj)
    except ValidationError as e:
        raise IntakeError(
            422, "invalid notification", outcome="invalid", details=_field_errors(e)
        ) from e


def to_request(notification: JobNotification) -> JobRequest:
    return JobRequest(
        source="webhook",
        job_id=notification.job_id,
        dispatch_id=notification.dispatch_id,
        job_type=notification.job_type,
        room_name=notification.room.name,
        room_sid=notification.room.sid,
        participant_identity=(
            notification.participant.identity if notification.participant else None
        ),
        metadata=notification.metadata or "",
        access_token=notification.access_token,
        server_url=notification.server_url,
    )


@dataclass(frozen=True, slots=True)
class IntakeAnswer:
    status: int
    body: dict[str, Any]
    outcome: str
    retry_after: int | None = None


def error_answer(error: IntakeError) -> IntakeAnswer:
    body: dict[str, Any] = {"accepted": False, "error": error.message}
    if error.details is not None:
        body["errors"] = error.details
    return IntakeAnswer(status=error.status, body=body, outcome=error.outcome)


def admission_answer(result: AdmissionResult) -> IntakeAnswer:
    if result.verdict == "busy":
        return IntakeAnswer(
            status=503,
            body={"accepted": False, "error": result.error or "no capacity"},
            outcome="busy",
            retry_after=result.retry_after,
        )
    if not result.accepted:
        return IntakeAnswer(
            status=200,
            body={"accepted": False, "error": result.error or "refused"},
            outcome="refused",
        )
    return IntakeAnswer(
        status=200,
        body={
            "accepted": True,
            "participant_identity": result.participant_identity,
            "participant_name": result.participant_name,
            "participant_metadata": result.participant_metadata,
        },
        outcome=result.verdict,
    )


async def handle_notification(
    body: bytes,
    headers: Mapping[str, str],
    *,
    policy: IntakePolicy,
    admission: Admission,
    now: float,
) -> tuple[IntakeAnswer, JobNotification | None]:
    """Every check, then the admission. Never raises for bad input."""
    try:
        notification = parse_notification(body, headers, policy=policy, now=now)
    except IntakeError as e:
        return error_answer(e), None
    result = await admission.admit(to_request(notification))
    return admission_answer(result), notification
