"""Our provider error types. Vendors translate their library's exceptions at the edge
(``raise ProviderX(...) from e``); everything above the providers sees only these."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed. ``retryable`` says whether the same call may succeed again."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str = "", retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}" if self.provider else self.message


class ProviderTimeout(ProviderError):
    """No answer (or no next chunk) within the deadline."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The endpoint could not be reached or dropped the connection."""

    retryable = True


class ProviderStatusError(ProviderError):
    """The endpoint answered with an error status. 408, 409, 429 and 5xx are retryable."""

    def __init__(
        self, message: str, *, status_code: int, provider: str = "", body: str | None = None
    ) -> None:
        retryable = status_code in (408, 409, 429) or status_code >= 500
        super().__init__(message, provider=provider, retryable=retryable)
        self.status_code = status_code
        self.body = body


class ProviderUnavailable(ProviderError):
    """The provider cannot run here at all (a missing optional package, a missing model file)."""

    retryable = False
