"""Minting a room token for the agent participant when an offer carries none.

The token itself is built by :func:`agents.transport.token.mint_agent_token` (the one place that
knows the agent's grants); this wrapper reads the service's keys and turns a failure into the
service's :class:`TokenMintError`.
"""

from __future__ import annotations

import datetime

from livekit import api
from pydantic import SecretStr

from agents.transport import token as room_token
from app.errors import TokenMintError


def mint_agent_token(
    *,
    api_key: str | None,
    api_secret: SecretStr | None,
    room: str,
    identity: str,
    name: str,
    metadata: str,
    ttl_seconds: float,
) -> str:
    """A JWT that lets ``identity`` join ``room`` as an agent and publish, subscribe and send
    data. Raises :class:`TokenMintError` without keys (never falls back to the environment)."""
    if not api_key or api_secret is None or not api_secret.get_secret_value():
        raise TokenMintError(
            "the offer has no access_token and no LIVEKIT_API_KEY / LIVEKIT_API_SECRET are "
            "configured to mint one"
        )
    try:
        return room_token.mint_agent_token(
            api_key=api_key, api_secret=api_secret.get_secret_value(), room=room,
            identity=identity, name=name, metadata=metadata, ttl=ttl_seconds,
        )
    except ValueError as e:
        raise TokenMintError(f"could not mint a room token: {e}") from e


def mint_caller_token(
    *,
    api_key: str | None,
    api_secret: SecretStr | None,
    room: str,
    identity: str,
    name: str,
    ttl_seconds: float,
) -> str:
    """A JWT for a person in ``room`` (the playground's caller): join, publish their microphone,
    camera and screen share, subscribe, send data. Raises :class:`TokenMintError` without keys."""
    if not api_key or api_secret is None or not api_secret.get_secret_value():
        raise TokenMintError("the playground needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    return (
        api.AccessToken(api_key, api_secret.get_secret_value())
        .with_identity(identity)
        .with_name(name)
        .with_grants(grants)
        .with_ttl(datetime.timedelta(seconds=ttl_seconds))
        .to_jwt()
    )
