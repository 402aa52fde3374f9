"""A caller's bearer token for an MCP server, refreshed when it expires.

A job's metadata may carry the caller's access token (``mcp_headers: {server: {Authorization:
"Bearer ..."}}``) and, for a server whose configuration has ``token_refresh``, the caller's
refresh token (``mcp_refresh: {server: "..."}``). :class:`RefreshingBearer` is the job
connection's ``httpx2.Auth``: before a request, when the access token is expired or about to be
(its JWT ``exp`` claim, or the ``expires_in`` of the last refresh, minus ``leeway_s``), it trades
the refresh token for a new one at the configured OAuth 2.0 token endpoint (``grant_type=
refresh_token``, RFC 6749 §6); a 401 answer triggers one refresh and one retry. Tokens and the
client secret are never logged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import jwt
import structlog

from agents.mcp_tools.config import TokenRefreshConfig

log = structlog.get_logger("agents.mcp")


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (not verified: the server verifies it), or None."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


class RefreshingBearer(httpx2.Auth):
    def __init__(
        self, *, access_token: str, refresh_token: str, config: TokenRefreshConfig,
        server: str, job_id: str | None,
    ) -> None:
        self._access = access_token.removeprefix("Bearer ").strip()
        self._refresh = refresh_token
        self._config = config
        self._expires_at = token_expiry(self._access)
        self._log = log.bind(server=server, job_id=job_id)
        self.refreshes = 0

    def _stale(self) -> bool:
        return (self._expires_at is not None
                and time.time() >= self._expires_at - self._config.leeway_s)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self._stale():
            await self._renew()
        request.headers["Authorization"] = f"Bearer {self._access}"
        response = yield request
        if response.status_code == 401 and await self._renew():
            request.headers["Authorization"] = f"Bearer {self._access}"
            yield request

    async def _renew(self) -> bool:
        """Trade the refresh token for a new access token. False when that failed (logged):
        the request then goes with the old token and the server's refusal reaches the model."""
        cfg = self._config
        form: dict[str, Any] = {"grant_type": "refresh_token", "refresh_token": self._refresh}
        if cfg.client_id:
            form["client_id"] = cfg.client_id
        if cfg.client_secret is not None:
            form["client_secret"] = cfg.client_secret.get_secret_value()
        try:
            async with httpx2.AsyncClient(timeout=cfg.timeout) as client:
                answer = await client.post(cfg.url, data=form)
            answer.raise_for_status()
            body = answer.json()
            access = body["access_token"]
            if not isinstance(access, str) or not access:
                raise ValueError("no access_token in the answer")
        except (httpx2.HTTPError, ValueError, KeyError, TypeError) as e:
            self._log.warning("mcp_token_refresh_failed", error_type=type(e).__name__)
            return False
        self._access = access
        if isinstance(body.get("refresh_token"), str) and body["refresh_token"]:
            self._refresh = body["refresh_token"]
        expires_in = body.get("expires_in")
        self._expires_at = (time.time() + float(expires_in)
                            if isinstance(expires_in, int | float) else token_expiry(access))
        self.refreshes += 1
        self._log.info("mcp_token_refreshed", refreshes=self.refreshes,
                       expires_in=None if self._expires_at is None
                       else round(self._expires_at - time.time()))
        return True
