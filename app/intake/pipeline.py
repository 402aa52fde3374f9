"""The order of checks on a job notification (PROTOCOL.md §1), independent of HTTP.

size → signature → timestamps → JSON → schema → admission (policy, idempotency, capacity).
Each failure is an :class:`IntakeError` with its HTTP status; nothing is spawned before the
admission says ``accepted``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from pydantic import SecretStr, ValidationError

from app.admission import Admission, AdmissionResult, JobRequest
from app.errors import IntakeError
from app.intake.schema import JobNotification
from app.security.signatures import SignatureVerifier, check_timestamp


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    secrets: Sequence[SecretStr]
    max_body_bytes: int
    timestamp_tolerance: float
    verifier: SignatureVerifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifier", SignatureVerifier(self.secrets))


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


# The model's own validator, called straight from bytes: what ``model_validate_json`` does,
# without its Python wrapper.
_validate_json = JobNotification.__pydantic_validator__.validate_json


def parse_notification(
    body: bytes, headers: Mapping[str, str], *, policy: IntakePolicy, now: float
) -> JobNotification:
    """Run every check up to the schema. ``headers`` keys must be lowercase."""
    if len(body) > policy.max_body_bytes:
        raise IntakeError(413, "body too large", outcome="too_large")
    verified = policy.verifier.verify(body, headers)
    tolerance = policy.timestamp_tolerance
    check_timestamp(verified.header_timestamp, now=now, tolerance=tolerance)
    try:  # fast path: one pass from bytes to model; the slow path below decides the error
        notification: JobNotification = _validate_json(body)
    except ValidationError:
        pass
    else:
        check_timestamp(notification.timestamp, now=now, tolerance=tolerance)
        return notification
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError, bad UTF-8 and integers past Python's digit limit.
        raise IntakeError(400, "body is not valid JSON", outcome="bad_json") from e
    body_ts = _body_timestamp(obj)
    if body_ts is not None:
        check_timestamp(body_ts, now=now, tolerance=tolerance)
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
    content: bytes
    """The JSON body, serialised."""
    outcome: str
    error: str | None = None
    retry_after: int | None = None


def _refusal(
    status: int,
    error: str,
    outcome: str,
    *,
    details: list[dict[str, Any]] | None = None,
    retry_after: int | None = None,
) -> IntakeAnswer:
    body: dict[str, Any] = {"accepted": False, "error": error}
    if details is not None:
        body["errors"] = details
    return IntakeAnswer(
        status=status,
        content=json.dumps(body, separators=(",", ":")).encode(),
        outcome=outcome,
        error=error,
        retry_after=retry_after,
    )


def rate_limited_answer(retry_after: int) -> IntakeAnswer:
    """429 for a source with too many failed signature checks (app/security/failures.py)."""
    return _refusal(
        429, "too many failed signature checks", "rate_limited", retry_after=retry_after
    )


def error_answer(error: IntakeError) -> IntakeAnswer:
    return _refusal(error.status, error.message, error.outcome, details=error.details)


def accepted_content(identity: str, name: str, metadata: str) -> bytes:
    """``{"accepted":true,"participant_identity":...,"participant_name":...,
    "participant_metadata":...}`` exactly as ``json.dumps(..., separators=(",", ":"))`` writes
    it, without building a dict and an encoder per answer."""
    return (
        '{"accepted":true,"participant_identity":'
        + encode_basestring_ascii(identity)
        + ',"participant_name":'
        + encode_basestring_ascii(name)
        + ',"participant_metadata":'
        + encode_basestring_ascii(metadata)
        + "}"
    ).encode()


def admission_answer(result: AdmissionResult) -> IntakeAnswer:
    if result.verdict == "busy":
        return _refusal(503, result.error or "no capacity", "busy", retry_after=result.retry_after)
    if not result.accepted:
        return _refusal(200, result.error or "refused", "refused")
    content = accepted_content(
        result.participant_identity, result.participant_name, result.participant_metadata
    )
    return IntakeAnswer(status=200, content=content, outcome=result.verdict)


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
