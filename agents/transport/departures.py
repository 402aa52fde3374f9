"""Who really left the room, across the SDK's full reconnects: :class:`Departures`.

A full reconnect of the SDK (not a resume) drops every remote participant, without a reason,
just before ``reconnecting``, and adds back those still there after ``reconnected``. A
participant gone without a reason is therefore reported gone only after ``grace`` seconds, and
not at all when a reconnect explains it and the participant comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

RESTART_GRACE = 1.0
"""Seconds a reasonless departure waits before it is reported (see the module)."""


class Departures:
    def __init__(self, *, grace: float, report: Callable[[str], None],
                 present: Callable[[], Collection[str]]) -> None:
        self._grace = grace
        self._report = report
        self._present = present
        self._unexplained: set[str] = set()
        """Gone without a reason, not yet reported: maybe the start of a full reconnect."""
        self._dropped_by_restart: set[str] = set()
        self._restarting = False
        self._timer: asyncio.TimerHandle | None = None

    def came_back(self, identity: str) -> bool:
        """``identity`` joined: True when it is one a full reconnect of ours had dropped (as far
        as the listener knows, never gone)."""
        if identity in self._unexplained or identity in self._dropped_by_restart:
            self._unexplained.discard(identity)
            self._dropped_by_restart.discard(identity)
            return True
        return False

    def left_without_reason(self, identity: str) -> None:
        self._unexplained.add(identity)
        if not self._restarting:
            self._arm()

    def reconnecting(self) -> None:
        if self._unexplained:  # a full reconnect: the reasonless departures were ours
            self._restarting = True
            self._dropped_by_restart |= self._unexplained
            self._unexplained.clear()
            self.cancel()

    def reconnected(self) -> None:
        if self._restarting:
            self._restarting = False
            self._arm()  # the participants still there are added back after this

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._grace, self.settle)

    @property
    def pending(self) -> bool:
        """A report is due when the grace runs out."""
        return self._timer is not None

    def settle(self) -> None:
        """Report who is really gone: reasonless departures no reconnect explained, and those
        a full reconnect dropped that did not come back (the timer's call; tests call it)."""
        self.cancel()
        gone = set(self._unexplained)
        self._unexplained.clear()
        if not self._restarting:
            present = self._present()
            gone |= {i for i in self._dropped_by_restart if i not in present}
            self._dropped_by_restart.clear()
        for identity in sorted(gone):
            self._report(identity)
