"""A running job's live events, for operators following it (``GET /console``).

The job body reports every data message the agent publishes and every ``user_text`` it receives
(:meth:`agents.job.JobReporter.event`). :class:`LiveLog` keeps the newest of them in a bounded
window with increasing sequence numbers, so a console can ask "what came after #n" and wait for
more (long polling) without the job ever waiting for a reader. Closing the log (the job ended)
wakes every waiter.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_LIVE_EVENTS = 2000
"""Events kept per job; older ones fall out of the window (a follower is told how many)."""


@dataclass(frozen=True, slots=True)
class LiveEvent:
    seq: int
    at: float
    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "type": self.kind, "data": self.data}


@dataclass(frozen=True, slots=True)
class LivePage:
    """Events after a sequence number, and whether the window lost some before them."""

    events: list[LiveEvent]
    next_seq: int
    """Ask for events after this one next time."""
    missed: int
    """Events the caller asked for that fell out of the window."""
    closed: bool


@dataclass(slots=True)
class LiveLog:
    """Mutated on the event loop only (the job's reporter); read by the console's handlers."""

    limit: int = MAX_LIVE_EVENTS
    _events: deque[LiveEvent] = field(default_factory=deque)
    _seq: int = 0
    _closed: bool = False
    _changed: asyncio.Event | None = None

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, kind: str, data: dict[str, Any]) -> None:
        if self._closed:
            return
        self._seq += 1
        self._events.append(LiveEvent(seq=self._seq, at=time.time(), kind=kind, data=data))
        while len(self._events) > self.limit:
            self._events.popleft()
        self._wake()

    def close(self) -> None:
        """The job ended: no more events; waiters return at once."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def after(self, seq: int, *, limit: int = 500) -> LivePage:
        first = self._events[0].seq if self._events else self._seq + 1
        missed = max(0, first - seq - 1)
        events = [e for e in self._events if e.seq > seq][:limit]
        next_seq = events[-1].seq if events else max(seq, first - 1)
        return LivePage(events=events, next_seq=next_seq, missed=missed, closed=self._closed)

    async def wait_after(self, seq: int, *, wait: float, limit: int = 500) -> LivePage:
        """:meth:`after`, waiting up to ``wait`` seconds for a first event when there is none
        yet (and the log is open)."""
        if seq >= self._seq and not self._closed and wait > 0:
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            try:
                async with asyncio.timeout(wait):
                    await changed.wait()
            except TimeoutError:
                pass
        return self.after(seq, limit=limit)
