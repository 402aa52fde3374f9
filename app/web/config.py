"""Settings of the browser playground (``EXTERNAL_AGENT_PLAYGROUND__...``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class PlaygroundSettings(BaseModel):
    """``GET /playground`` and ``POST /playground/session``: try the agent from a browser.

    Available in development mode, or when a ``token`` is configured (then every session
    request needs ``Authorization: Bearer <token>``, in development mode too). Never open by
    default in production: without a token it is off there."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve the playground where it is allowed (false: never)."
    )
    token: SecretStr | None = Field(
        None, description="Bearer token that opens the playground (needed outside dev mode)."
    )
    public_url: str | None = Field(
        None,
        pattern=r"^(wss?|https?)://",
        description="LiveKit URL the browser dials; default livekit_url (set it when the "
        "service reaches LiveKit by an internal address).",
    )
    caller_token_ttl: float = Field(
        3600.0, ge=60, le=24 * 3600, description="Lifetime of the caller's room token (s)."
    )

    def available(self, *, dev_mode: bool) -> bool:
        return self.enabled and (dev_mode or self.token is not None)
