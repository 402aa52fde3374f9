"""Verifying LiveKit server webhooks, and remembering the events already handled.

The server signs each webhook with a JWT (``Authorization`` header, with or without ``Bearer``)
minted with its API key/secret; the token's ``sha256`` claim is the base64 SHA-256 of the raw
body. ``livekit-api``'s :class:`~livekit.api.WebhookReceiver` checks this but compares the hashes
with ``!=`` and raises a bare ``Exception``; :class:`ConstantTimeWebhookReceiver` keeps its
token verification, compares with :func:`hmac.compare_digest` on the raw bytes, and raises our
own :class:`WebhookVerificationError` / :class:`WebhookPayloadError`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jwt
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import ParseDict, ParseError
from livekit import api
from livekit.protocol.webhook import WebhookEvent

from app.dispatch.ports import WebhookPayloadError, WebhookVerificationError


class ConstantTimeWebhookReceiver(api.WebhookReceiver):
    """``max_token_lifetime``: a token whose ``exp`` lies further ahead than this many seconds
    is refused, so no token can be replayed after the event's id has left the dedup memory
    (``None``: no bound)."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        leeway: float = 60.0,
        max_token_lifetime: float | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key or not api_secret:
            raise ValueError("LiveKit webhooks need the api_key and api_secret")
        self._token_verifier = api.TokenVerifier(
            api_key, api_secret, leeway=datetime.timedelta(seconds=leeway)
        )
        self._max_lifetime = max_token_lifetime
        self._wall_clock = wall_clock
        super().__init__(self._token_verifier)

    def receive(self, body: str, auth_token: str) -> WebhookEvent:
        return self.receive_bytes(body.encode(), auth_token)

    def receive_bytes(self, body: bytes, authorization: str | None) -> WebhookEvent:
        """Verify ``authorization`` against ``body`` (raw bytes), then parse the event."""
        token = (authorization or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            raise WebhookVerificationError("missing Authorization token")
        try:
            claims = self._token_verifier.verify(token)
        except jwt.ExpiredSignatureError as e:
            raise WebhookVerificationError("token expired") from e
        except jwt.InvalidIssuerError as e:
            raise WebhookVerificationError("token issued for another API key") from e
        except jwt.InvalidSignatureError as e:
            raise WebhookVerificationError("token signature invalid") from e
        except Exception as e:  # the SDK and PyJWT raise many types for a bad token
            raise WebhookVerificationError(f"invalid token ({type(e).__name__})") from e
        if self._max_lifetime is not None:
            # Verified above (signature, issuer, exp present and not passed): read its exp.
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            if not isinstance(exp, int | float) or exp - self._wall_clock() > self._max_lifetime:
                raise WebhookVerificationError("token outlives the replay window")
        if not claims.sha256:
            raise WebhookVerificationError("token has no sha256 claim")
        try:
            claimed = base64.b64decode(claims.sha256, validate=True)
        except (binascii.Error, ValueError) as e:
            raise WebhookVerificationError("sha256 claim is not base64") from e
        if not hmac.compare_digest(hashlib.sha256(body).digest(), claimed):
            raise WebhookVerificationError("body does not match the token's sha256")
        return parse_event(body)


def parse_event(body: bytes) -> WebhookEvent:
    """A verified body as a ``WebhookEvent``; :class:`WebhookPayloadError` when it is not a
    JSON object of that shape (the SDK's parser silently accepts ``[]`` or ``"x"``)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WebhookPayloadError("body is not JSON") from e
    if not isinstance(data, dict):
        raise WebhookPayloadError("body is not a JSON object")
    problem = _shape_problem(data, WebhookEvent.DESCRIPTOR, "")
    if problem is not None:
        raise WebhookPayloadError(problem)
    try:
        return ParseDict(data, WebhookEvent(), ignore_unknown_fields=True)
    except (ParseError, RecursionError) as e:
        raise WebhookPayloadError(f"not a LiveKit webhook event: {str(e)[:200]}") from e


def _shape_problem(data: dict[str, Any], descriptor: Any, where: str) -> str | None:
    """Where a message-typed field holds something other than an object (protobuf's JSON
    parser silently reads ``"room": "x"`` as an empty room); ``None`` when the shapes fit."""
    for key, value in data.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None or field.type != FieldDescriptor.TYPE_MESSAGE or value is None:
            continue
        message = field.message_type
        if message is None or message.full_name.startswith("google.protobuf."):
            continue
        name = where + field.json_name
        if message.GetOptions().map_entry:
            if not isinstance(value, dict):
                return f"{name} must be an object"
            continue
        values = value if _is_repeated(field) else [value]
        if _is_repeated(field) and not isinstance(value, list):
            return f"{name} must be an array"
        for item in values:
            if not isinstance(item, dict):
                return f"{name} must be an object"
            problem = _shape_problem(item, message, name + ".")
            if problem is not None:
                return problem
    return None


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


class EventDeduplicator:
    """Answers of recently handled event ids, for ``window`` seconds and at most
    ``max_entries`` of them (oldest dropped first)."""

    def __init__(
        self,
        *,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        self._prune()
        return len(self._seen)

    def get(self, event_id: str) -> dict[str, Any] | None:
        self._prune()
        entry = self._seen.get(event_id)
        return None if entry is None else entry[1]

    def remember(self, event_id: str, answer: dict[str, Any]) -> None:
        self._prune()
        self._seen[event_id] = (self._clock() + self._window, answer)
        self._seen.move_to_end(event_id)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _prune(self) -> None:
        now = self._clock()
        while self._seen:
            _, (expires, _) = next(iter(self._seen.items()))
            if expires > now:
                return
            self._seen.popitem(last=False)
