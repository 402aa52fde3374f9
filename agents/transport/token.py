"""Access tokens: read a job token's claims before dialling, and mint one when none came.

The expiry is checked locally so an expired or garbled token fails the job with a clear reason
instead of a vague connection error after several retries. The signature is not checked here:
the LiveKit server does that, and the service may not hold the key that signed the token.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

import jwt
from livekit import api

from agents.transport.base import TransportError


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenClaims:
    identity: str
    room: str
    expires_at: float | None
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool
    can_update_own_metadata: bool


def read_token(token: str, *, now: float | None = None, leeway: float = 10.0) -> TokenClaims:
    """The claims of ``token``. Raises a non-retryable :class:`TransportError` whose reason
    starts with ``invalid token`` or ``token expired``."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, options={"verify_signature": False, "verify_exp": False}
        )
    except jwt.PyJWTError as e:
        raise TransportError(f"invalid token: {e}", retryable=False) from e
    exp = claims.get("exp")
    if exp is not None and not isinstance(exp, int | float):
        raise TransportError("invalid token: exp is not a number", retryable=False)
    current = time.time() if now is None else now
    if exp is not None and float(exp) + leeway < current:
        ago = int(current - float(exp))
        raise TransportError(f"token expired {ago} s ago", retryable=False)
    identity = claims.get("sub")
    if not isinstance(identity, str) or not identity:
        raise TransportError("invalid token: no identity (sub)", retryable=False)
    video = claims.get("video")
    if not isinstance(video, dict) or not video.get("roomJoin"):
        raise TransportError("invalid token: no room join grant", retryable=False)
    room = video.get("room")
    if not isinstance(room, str) or not room:
        raise TransportError("invalid token: no room in the grant", retryable=False)
    return TokenClaims(
        identity=identity,
        room=room,
        expires_at=float(exp) if exp is not None else None,
        can_publish=bool(video.get("canPublish", True)),
        can_subscribe=bool(video.get("canSubscribe", True)),
        can_publish_data=bool(video.get("canPublishData", True)),
        can_update_own_metadata=bool(video.get("canUpdateOwnMetadata", False)),
    )


def mint_agent_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    name: str = "",
    metadata: str = "",
    ttl: float = 6 * 3600,
) -> str:
    """A token for the job's participant: join ``room``, publish, subscribe, publish data, set
    its own attributes (``lk.agent.state``), as an agent-kind participant."""
    if not api_key or not api_secret:
        raise ValueError("api_key and api_secret are required to mint a token")
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True,
        can_update_own_metadata=True,
    )
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_metadata(metadata)
        .with_kind("agent")
        .with_grants(grants)
        .with_ttl(datetime.timedelta(seconds=ttl))
    )
    return token.to_jwt()
