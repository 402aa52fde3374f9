"""The service's own error types. Each says whether trying again could help (``retryable``)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of the service's errors."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable


class IntakeError(ServiceError):
    """A job notification was refused before admission. ``status`` is the HTTP answer,
    ``outcome`` the metrics label, ``details`` optional JSON-safe field errors."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        outcome: str,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, retryable=status >= 500)
        self.status = status
        self.outcome = outcome
        self.details = details


class TokenMintError(ServiceError):
    """A room token was needed and could not be minted (no API keys, bad room name)."""


class JobBodyImportError(ServiceError):
    """The configured job body could not be loaded."""
