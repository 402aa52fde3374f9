"""Signature checks on the raw body bytes, before anything parses them.

Two schemes are accepted on the job webhook:

- LiveKit external agents: ``X-LiveKit-Signature`` is the lowercase hex HMAC-SHA256 of the raw
  body (also ``sha256=<hex>``), ``X-LiveKit-Timestamp`` is unix seconds. The timestamp header is
  not covered by the MAC; only the body's own ``timestamp`` field is.
- Standard Webhooks (https://www.standardwebhooks.com): ``webhook-signature: v1,<base64>``
  (several, space separated) is the HMAC-SHA256 of ``<webhook-id>.<webhook-timestamp>.<body>``,
  so the id and timestamp are signed too. A secret written ``whsec_<base64>`` is used as the
  decoded key bytes; any other secret as its UTF-8 bytes.

Every configured secret is tried (rotation) and every comparison is constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from app.errors import IntakeError

Scheme = Literal["livekit", "standard"]

LIVEKIT_SIGNATURE = "x-livekit-signature"
LIVEKIT_TIMESTAMP = "x-livekit-timestamp"
SW_ID = "webhook-id"
SW_TIMESTAMP = "webhook-timestamp"
SW_SIGNATURE = "webhook-signature"

_MAX_HEADER = 4096
_MAX_SW_SIGNATURES = 8


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    scheme: Scheme
    header_timestamp: int
    secret_index: int
    """Which configured secret matched (0 is the current one; higher means a rotated-out one)."""


def _key(secret: SecretStr, scheme: Scheme) -> bytes:
    value = secret.get_secret_value()
    if scheme == "standard" and value.startswith("whsec_"):
        try:
            return base64.b64decode(value[len("whsec_") :], validate=True)
        except binascii.Error:
            return value.encode()
    return value.encode()


def livekit_signature(body: bytes, secret: SecretStr | str) -> str:
    """Lowercase hex HMAC-SHA256 of ``body`` (the ``X-LiveKit-Signature`` value)."""
    s = secret if isinstance(secret, SecretStr) else SecretStr(secret)
    return hmac.new(_key(s, "livekit"), body, hashlib.sha256).hexdigest()


def standard_signature(msg_id: str, timestamp: int, body: bytes, secret: SecretStr | str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one secret."""
    s = secret if isinstance(secret, SecretStr) else SecretStr(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(s, "standard"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _parse_timestamp(raw: str | None, header: str) -> int:
    if raw is None or raw.strip() == "":
        raise IntakeError(401, f"missing {header} header", outcome="bad_signature")
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise IntakeError(401, f"{header} must be unix seconds", outcome="bad_signature")
    return int(text)


class SignatureVerifier:
    """:func:`verify_signature` with every secret's HMAC key prepared once (the key schedule
    is copied per request instead of being recomputed). Build one per set of secrets."""

    __slots__ = ("_livekit", "_standard")

    def __init__(self, secrets: Sequence[SecretStr]) -> None:
        self._livekit = tuple(
            hmac.new(_key(s, "livekit"), digestmod=hashlib.sha256) for s in secrets
        )
        self._standard = tuple(
            hmac.new(_key(s, "standard"), digestmod=hashlib.sha256) for s in secrets
        )

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedSignature:
        """Check the request's signature against every secret. ``headers`` keys are lowercase.

        Raises :class:`IntakeError` (401) when no scheme's headers are present, a header is
        malformed, or no secret matches. Timestamp tolerance is checked by the caller.
        """
        if not self._livekit:
            raise IntakeError(401, "no webhook secret configured", outcome="bad_signature")
        if SW_SIGNATURE in headers:
            return self._verify_standard(body, headers)
        if LIVEKIT_SIGNATURE in headers:
            return self._verify_livekit(body, headers)
        raise IntakeError(401, "missing signature", outcome="bad_signature")

    def _verify_livekit(self, body: bytes, headers: Mapping[str, str]) -> VerifiedSignature:
        given = headers[LIVEKIT_SIGNATURE].strip()
        if given[:7].lower() == "sha256=":
            given = given[7:]
        given = given.lower()
        if len(given) != 64 or not given.isascii():
            raise IntakeError(401, "invalid signature", outcome="bad_signature")
        timestamp = _parse_timestamp(headers.get(LIVEKIT_TIMESTAMP), "X-LiveKit-Timestamp")
        matched = -1
        for index, keyed in enumerate(self._livekit):
            mac = keyed.copy()
            mac.update(body)
            # No early exit: every secret costs the same, whichever matches.
            if hmac.compare_digest(mac.hexdigest(), given) and matched < 0:
                matched = index
        if matched < 0:
            raise IntakeError(401, "invalid signature", outcome="bad_signature")
        return VerifiedSignature(scheme="livekit", header_timestamp=timestamp, secret_index=matched)

    def _verify_standard(self, body: bytes, headers: Mapping[str, str]) -> VerifiedSignature:
        msg_id = headers.get(SW_ID, "").strip()
        if not msg_id or len(msg_id) > 256 or not msg_id.isascii():
            raise IntakeError(401, "missing or invalid webhook-id header", outcome="bad_signature")
        timestamp = _parse_timestamp(headers.get(SW_TIMESTAMP), "webhook-timestamp")
        raw = headers[SW_SIGNATURE]
        if len(raw) > _MAX_HEADER:
            raise IntakeError(401, "invalid signature", outcome="bad_signature")
        candidates = [
            part[3:].encode()
            for part in raw.split()[:_MAX_SW_SIGNATURES]
            if part.startswith("v1,") and part.isascii()
        ]
        if not candidates:
            raise IntakeError(401, "no v1 signature in webhook-signature", outcome="bad_signature")
        signed = f"{msg_id}.{timestamp}.".encode()
        matched = -1
        for index, keyed in enumerate(self._standard):
            mac = keyed.copy()
            mac.update(signed)
            mac.update(body)
            expected = base64.b64encode(mac.digest())
            for candidate in candidates:
                if hmac.compare_digest(expected, candidate) and matched < 0:
                    matched = index
        if matched < 0:
            raise IntakeError(401, "invalid signature", outcome="bad_signature")
        return VerifiedSignature(
            scheme="standard", header_timestamp=timestamp, secret_index=matched
        )


def verify_signature(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[SecretStr]
) -> VerifiedSignature:
    """Check the request's signature against every secret (see :meth:`SignatureVerifier.verify`;
    build a :class:`SignatureVerifier` once where the same secrets check many requests)."""
    return SignatureVerifier(secrets).verify(body, headers)


def check_timestamp(value: int | float, *, now: float, tolerance: float) -> None:
    """Raise :class:`IntakeError` 401 ``stale timestamp`` when ``value`` is too far from
    ``now`` in either direction."""
    # Compared without float(): a huge integer would overflow it, and NaN compares false.
    if isinstance(value, float) and not math.isfinite(value):
        raise IntakeError(401, "stale timestamp", outcome="stale")
    if not now - tolerance <= value <= now + tolerance:
        raise IntakeError(401, "stale timestamp", outcome="stale")


def sign_headers(
    body: bytes,
    secret: SecretStr | str,
    *,
    timestamp: int,
    scheme: Scheme = "livekit",
    msg_id: str = "",
) -> dict[str, str]:
    """Headers that make ``body`` pass :func:`verify_signature` (used by the CLI and tests)."""
    if scheme == "standard":
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(msg_id, timestamp, body, secret),
        }
    return {
        "X-LiveKit-Signature": livekit_signature(body, secret),
        "X-LiveKit-Timestamp": str(timestamp),
    }
