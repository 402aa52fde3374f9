"""Data packets whose sender the room cannot name yet, held for the next person to join.

A caller's data channel can beat the room's news of the caller by seconds, and the SDK then
gives no sender at all (the identity is dropped below the Python layer). Such a packet is handled
as the next person's to join, since nobody sends before joining: at most :data:`EARLY_DATA_MAX`
of them, each for at most :data:`EARLY_DATA_TTL` seconds.
"""

from __future__ import annotations

import asyncio

EARLY_DATA_MAX = 32
EARLY_DATA_TTL = 5.0


class EarlyData:
    def __init__(self) -> None:
        self._held: list[tuple[float, str, bytes]] = []

    def __bool__(self) -> bool:
        return bool(self._held)

    def _fresh(self, now: float) -> list[tuple[float, str, bytes]]:
        return [e for e in self._held if now - e[0] <= EARLY_DATA_TTL]

    def hold(self, topic: str, payload: bytes) -> bool:
        """Keep a packet without a sender; ``False`` when the hold is full (it is not kept)."""
        now = asyncio.get_running_loop().time()
        self._held = self._fresh(now)
        if len(self._held) >= EARLY_DATA_MAX:
            return False
        self._held.append((now, topic, payload))
        return True

    def take(self) -> list[tuple[str, bytes]]:
        """The packets still fresh, in arrival order; the hold is empty afterwards."""
        fresh = self._fresh(asyncio.get_running_loop().time())
        self._held = []
        return [(topic, payload) for _, topic, payload in fresh]
