"""Rate limiting of failed signature checks, per source.

Every request with a bad signature costs an HMAC (or a JWT check) per configured secret. A
source (the client address, or a trusted proxy's header) that fails more than ``limit`` times
within ``window`` seconds is answered ``429`` with ``Retry-After`` until its window ends,
without any verification work. Requests that verify are never counted, so a flood of forged
requests from one source cannot lock out the dispatcher (unless it shares the address).

Memory is bounded: at most ``max_sources`` sources are tracked, in a
:class:`cachetools.TTLCache` (entries expire with their window; past the bound the oldest are
dropped first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field


class AuthFailureSettings(BaseModel):
    """``auth_failures`` in the settings (docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Rate-limit failed signature checks per source. Turn off behind a proxy "
        "that hides client addresses (unless source_header names the proxy's header).",
    )
    limit: int = Field(20, ge=1, description="Failed checks a source may make per window.")
    window: float = Field(60.0, gt=0, le=86_400, description="Window length (s).")
    max_sources: int = Field(10_000, ge=1, description="Sources tracked at most (memory bound).")
    source_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Take the source from this header (its last comma-separated entry, the one "
        "the trusted proxy appended, e.g. x-forwarded-for) instead of the peer address. Only "
        "behind a proxy that sets it: clients can write any header.",
    )


@dataclass(slots=True)
class _Window:
    ends: float
    failures: int


class FailureLimiter:
    def __init__(
        self, *, settings: AuthFailureSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._header = settings.source_header.lower().encode() if settings.source_header else None
        self._windows: TTLCache[str, _Window] = TTLCache(
            maxsize=settings.max_sources, ttl=settings.window, timer=clock
        )

    def __len__(self) -> int:
        return len(self._windows)

    def source(self, client: tuple[str, int] | None, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """Who is asking: the trusted proxy header's last entry, else the peer address."""
        if self._header is not None:
            for name, value in headers:
                if name == self._header:
                    last = value.decode("latin-1").rsplit(",", 1)[-1].strip()
                    if last:
                        return last[:64]
        return client[0] if client else "unknown"

    def retry_after(self, source: str) -> int | None:
        """Seconds until ``source`` may try again, or ``None`` when it is not limited."""
        if not self.settings.enabled:
            return None
        window = self._windows.get(source)
        if window is None or window.failures < self.settings.limit:
            return None
        remaining = window.ends - self._clock()
        return max(1, math.ceil(remaining)) if remaining > 0 else None

    def failed(self, source: str) -> None:
        """Count a failed signature check from ``source``."""
        if not self.settings.enabled:
            return
        now = self._clock()
        window = self._windows.get(source)
        if window is None or window.ends <= now:
            self._windows[source] = _Window(ends=now + self.settings.window, failures=1)
        else:
            window.failures += 1
