"""Audio that arrived and was not processed yet, for every job of the process.

A job's audio reader receives 10 ms frames from the SDK; when the process falls behind (too many
jobs, a slow model call on the event loop), frames queue up and the agent hears the caller later
and later. :class:`StaleAudioGuard` keeps a reader in real time: when more than
``max_backlog_ms`` is queued behind the frame in hand, the queued frames but the newest are
dropped (the turn detector sees a gap, as after a network loss) instead of being processed late.
:class:`AudioBacklog` is what the service's admission reads: the worst backlog of any reader.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

log = structlog.get_logger("agents.transport.backlog")

FRAME_MS = 10.0
"""Default duration of one queued frame (ms)."""


class HasBacklog(Protocol):
    @property
    def backlog_ms(self) -> float: ...


class AudioBacklog:
    """The audio readers of every job in this process (added and removed by the transports)."""

    def __init__(self) -> None:
        self._readers: set[HasBacklog] = set()
        self.dropped_ms = 0.0
        """Stale audio dropped by all readers since start."""

    def add(self, reader: HasBacklog) -> None:
        self._readers.add(reader)

    def discard(self, reader: HasBacklog) -> None:
        self._readers.discard(reader)

    @property
    def worst_ms(self) -> float:
        return max((r.backlog_ms for r in self._readers), default=0.0)


def queued_frames(stream: Any) -> int:
    """Frames an ``rtc.AudioStream`` holds that its reader has not taken yet (0 if unknown).

    The SDK keeps them in a private ring; livekit 1.2's layout is read here, in one place."""
    ring = getattr(stream, "_queue", None)
    items = getattr(ring, "_queue", None)
    try:
        return len(items) if items is not None else 0
    except TypeError:
        return 0


class StaleAudioGuard:
    """Per reader: decides, frame by frame, whether a frame is stale and must be dropped."""

    def __init__(self, *, identity: str, max_backlog_ms: float,
                 backlog: AudioBacklog | None = None, frame_ms: float = FRAME_MS) -> None:
        self.identity = identity
        self.frame_ms = frame_ms
        self._max_frames = max(1, int(max_backlog_ms / frame_ms))
        self._skip = 0
        self._backlog = backlog
        self.backlog_ms = 0.0
        self.dropped_frames = 0
        self.drops = 0

    def stale(self, queued: int) -> bool:
        """Called with each frame taken, and how many wait behind it. ``True``: drop this one.

        Past the limit, this frame and every queued one but the newest are dropped, so the
        reader is back in real time at the newest frame."""
        self.backlog_ms = queued * self.frame_ms
        if self._skip:
            self._skip -= 1
            self.dropped_frames += 1
            if self._backlog is not None:
                self._backlog.dropped_ms += self.frame_ms
            return True
        if queued <= self._max_frames:
            return False
        self.drops += 1
        self._skip = queued - 1
        self.dropped_frames += 1
        if self._backlog is not None:
            self._backlog.dropped_ms += self.frame_ms
        log.warning("stale_audio_dropped", identity=self.identity,
                    dropped_ms=queued * self.frame_ms, drops=self.drops)
        return True
