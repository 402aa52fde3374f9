"""What the OpenAI-compatible providers share: building the client and translating the ``openai``
package's exceptions (and the HTTP library's, which escape while a streamed body is read) into
our provider errors.

The client never retries (``max_retries=0``): the provider base owns retries and deadlines. Its
HTTP timeouts are a backstop set a little beyond the call policy, so the policy's own deadline
normally fires first; either way the caller sees :class:`ProviderTimeout`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from agents.providers.base import CallPolicy
from agents.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "no-key"
"""Sent as the bearer token to a ``base_url`` configured without an ``api_key``."""
_BACKSTOP = 1.0
"""Seconds the HTTP timeouts add to the policy's deadlines."""
_BODY_LIMIT = 500
"""Characters of an error body kept on the error."""


def _http_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeout errors, transport errors) of whichever HTTP libraries the SDK may use."""
    timeouts: list[type[BaseException]] = []
    transport: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module: Any = __import__(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
        transport.append(module.StreamError)
    try:
        import anyio

        transport.append(anyio.EndOfStream)
        transport.append(anyio.ClosedResourceError)
    except ImportError:  # pragma: no cover - anyio comes with openai
        pass
    return tuple(timeouts), tuple(transport)


_TIMEOUT_ERRORS, _TRANSPORT_ERRORS = _http_error_types()
_SDK_ERRORS: tuple[type[BaseException], ...] = (
    openai.OpenAIError, ValueError, *_TIMEOUT_ERRORS, *_TRANSPORT_ERRORS
)
"""What the SDK and its HTTP library raise; anything else is our own bug and propagates."""


def make_client(
    *, api_key: str, base_url: str | None, policy: CallPolicy, provider: str
) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` client for ``base_url`` (default: the OpenAI API) with no retries of
    its own and HTTP timeouts consistent with ``policy``. An empty ``api_key`` is refused for the
    OpenAI API and replaced by a placeholder for a ``base_url`` (local servers need none).

    ``base_url`` is always passed explicitly, so ``OPENAI_BASE_URL`` in the environment cannot
    redirect a provider: endpoints come from configuration only.
    """
    if not api_key:
        if not base_url:
            raise ProviderUnavailable(
                "api_key is required for the OpenAI API (set base_url for a local server)",
                provider=provider,
            )
        api_key = LOCAL_PLACEHOLDER_KEY  # local servers (Ollama, llama.cpp) ignore it
    read = max(policy.timeout, policy.chunk_timeout) + _BACKSTOP
    timeout = openai.Timeout(
        read, connect=policy.timeout + _BACKSTOP, write=policy.timeout + _BACKSTOP, pool=read
    )
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url or DEFAULT_BASE_URL,
        max_retries=0,
        timeout=timeout,
    )


class OpenAIClientOwner:
    """What the three OpenAI providers share: one client, an idempotent ``aclose``, and the
    check that refuses calls after it. Mixed in before the provider base class."""

    name: str
    policy: CallPolicy
    _client: openai.AsyncOpenAI
    _closed: bool

    def _open_client(self, *, api_key: str, base_url: str | None) -> None:
        self._client = make_client(
            api_key=api_key, base_url=base_url, policy=self.policy, provider=self.name
        )
        self._closed = False

    def _check_open(self, kind: str) -> None:
        if self._closed:
            raise ProviderError(f"{kind} provider is closed", provider=self.name)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.close()


def _status_message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return f"HTTP {e.status_code}: {err['message']}"
    return f"HTTP {e.status_code}: {e.message}"


def translate(e: BaseException, *, provider: str, what: str) -> ProviderError:
    """Our error for an exception raised by the ``openai`` package or its HTTP library."""
    if isinstance(e, ProviderError):
        return e
    if isinstance(e, openai.APITimeoutError) or isinstance(e, _TIMEOUT_ERRORS):
        return ProviderTimeout(f"{what}: the HTTP request timed out", provider=provider)
    if isinstance(e, openai.APIConnectionError) or isinstance(e, _TRANSPORT_ERRORS):
        return ProviderConnectionError(
            f"{what}: connection failed or dropped ({type(e).__name__}: {e})", provider=provider
        )
    if isinstance(e, openai.APIStatusError):
        body = e.body if isinstance(e.body, str) else json.dumps(e.body, default=str)
        return ProviderStatusError(
            f"{what}: {_status_message(e)}",
            status_code=e.status_code,
            provider=provider,
            body=body[:_BODY_LIMIT] if body else None,
        )
    if isinstance(e, openai.APIResponseValidationError):
        return ProviderError(f"{what}: malformed response: {e.message}", provider=provider)
    if isinstance(e, openai.APIError):
        # An error event inside a stream: the server's own "server_error" is worth a retry.
        info = e.body if isinstance(e.body, dict) else {}
        transient = info.get("type") == "server_error" or info.get("code") == "rate_limit_exceeded"
        return ProviderError(f"{what}: {e.message}", provider=provider, retryable=transient)
    if isinstance(e, ValueError):  # json.JSONDecodeError and friends: a garbled payload
        return ProviderError(f"{what}: malformed response ({e})", provider=provider)
    if isinstance(e, openai.OpenAIError):
        return ProviderError(f"{what}: {e}", provider=provider)
    return ProviderError(f"{what}: unexpected {type(e).__name__}: {e}", provider=provider)


@asynccontextmanager
async def translated(*, provider: str, what: str) -> AsyncIterator[None]:
    """Raise our error types (``from`` the original) for anything the SDK raises inside."""
    try:
        yield
    except _SDK_ERRORS as e:
        raise translate(e, provider=provider, what=what) from e

