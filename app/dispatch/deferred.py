"""Rooms waiting for an agent: native dispatches refused for capacity, remembered in arrival
order (bounded, with a TTL) until a slot frees and the dispatch is re-issued.

One replica: :class:`MemoryDeferredStore`. Several replicas with ``registry: redis``:
:class:`RedisDeferredStore`, one queue for all of them (a sorted set by arrival time plus a hash
of entries), so a room refused by every replica waits once and is re-issued by whichever frees a
slot first.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from app.jobs.registry import RegistryError


@dataclass(frozen=True, kw_only=True, slots=True)
class DeferredDispatch:
    """A room whose dispatch the server gave up on because we were full."""

    room: str
    agent_name: str
    metadata: str
    dispatch_id: str
    """The server's dispatch that got no agent (checked, then replaced, on re-issue)."""
    job_id: str
    """The offer we refused."""
    first_seen: float
    """Wall-clock time of the first refusal: arrival order, kept across re-issues."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeferredDispatch:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            room=str(data["room"]),
            agent_name=str(data["agent_name"]),
            metadata=str(data.get("metadata", "")),
            dispatch_id=str(data.get("dispatch_id", "")),
            job_id=str(data.get("job_id", "")),
            first_seen=float(data["first_seen"]),
        )

    def view(self, now: float) -> dict[str, Any]:
        """What ``GET /jobs`` shows (no metadata: it may be personal)."""
        return {
            "room": self.room,
            "agent_name": self.agent_name,
            "dispatch_id": self.dispatch_id,
            "job_id": self.job_id,
            "waiting_s": round(max(0.0, now - self.first_seen), 3),
        }


class DeferredStore(Protocol):
    async def add(self, entry: DeferredDispatch) -> bool:
        """Remember ``entry`` unless its room already waits (the first arrival stays) or the
        store is full. ``True`` when the room now waits (also when it already did)."""
        ...

    async def take(self) -> tuple[DeferredDispatch | None, int]:
        """Remove and return the oldest unexpired entry, and how many expired ones were dropped
        on the way."""
        ...

    async def entries(self) -> list[DeferredDispatch]:
        """Unexpired entries, oldest first."""
        ...

    async def count(self) -> int: ...

    async def aclose(self) -> None: ...


class MemoryDeferredStore:
    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, DeferredDispatch] = {}

    def _expired(self, entry: DeferredDispatch, now: float) -> bool:
        return now - entry.first_seen > self._ttl

    def _prune(self, now: float) -> int:
        stale = [room for room, e in self._entries.items() if self._expired(e, now)]
        for room in stale:
            del self._entries[room]
        return len(stale)

    async def add(self, entry: DeferredDispatch) -> bool:
        self._prune(time.time())
        if entry.room in self._entries:
            return True
        if len(self._entries) >= self._max:
            return False
        self._entries[entry.room] = entry
        return True

    async def take(self) -> tuple[DeferredDispatch | None, int]:
        expired = self._prune(time.time())
        if not self._entries:
            return None, expired
        oldest = min(self._entries.values(), key=lambda e: e.first_seen)
        del self._entries[oldest.room]
        return oldest, expired

    async def entries(self) -> list[DeferredDispatch]:
        self._prune(time.time())
        return sorted(self._entries.values(), key=lambda e: e.first_seen)

    async def count(self) -> int:
        self._prune(time.time())
        return len(self._entries)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisDeferredStore:
    """Shared queue: ``<prefix>order`` (sorted set, room -> first_seen) and ``<prefix>entries``
    (hash, room -> JSON). ``ZADD NX`` keeps the first arrival; ``ZPOPMIN`` hands each room to one
    replica only. The bound is checked in the same transaction as the insert."""

    def __init__(
        self,
        *,
        client: Any,
        ttl: float,
        max_entries: int,
        prefix: str = "external-agent:deferred:",
        owns_client: bool = True,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._max = max_entries
        self._order = prefix + "order"
        self._hash = prefix + "entries"
        self._owns_client = owns_client
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, ttl: float, max_entries: int) -> RedisDeferredStore:
        from redis.asyncio import Redis

        return cls(client=Redis.from_url(url), ttl=ttl, max_entries=max_entries)

    async def _prune(self, now: float) -> int:
        stale = await self._client.zrangebyscore(self._order, "-inf", now - self._ttl)
        if not stale:
            return 0
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._order, *stale)
            pipe.hdel(self._hash, *stale)
            removed, _ = await pipe.execute()
        return int(removed)

    async def add(self, entry: DeferredDispatch) -> bool:
        try:
            await self._prune(time.time())
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._order, {entry.room: entry.first_seen}, nx=True)
                pipe.hsetnx(self._hash, entry.room, entry.to_json())
                pipe.zcard(self._order)
                added, _, size = await pipe.execute()
            if not added:
                return True  # already waiting: the first arrival stays
            if int(size) > self._max:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.zrem(self._order, entry.room)
                    pipe.hdel(self._hash, entry.room)
                    await pipe.execute()
                return False
        except Exception as e:  # redis-py raises many types; translate at the edge
            raise RegistryError(f"deferred queue unavailable: {type(e).__name__}") from e
        return True

    async def take(self) -> tuple[DeferredDispatch | None, int]:
        try:
            expired = await self._prune(time.time())
            while True:
                popped = await self._client.zpopmin(self._order, 1)
                if not popped:
                    return None, expired
                room = popped[0][0]
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.hget(self._hash, room)
                    pipe.hdel(self._hash, room)
                    raw, _ = await pipe.execute()
                if raw is not None:  # None: added by a replica still writing it, or corrupt
                    return DeferredDispatch.from_json(raw), expired
        except RegistryError:
            raise
        except Exception as e:
            raise RegistryError(f"deferred queue unavailable: {type(e).__name__}") from e

    async def entries(self) -> list[DeferredDispatch]:
        try:
            await self._prune(time.time())
            rooms = await self._client.zrange(self._order, 0, -1)
            if not rooms:
                return []
            raws = await self._client.hmget(self._hash, rooms)
        except Exception as e:
            raise RegistryError(f"deferred queue unavailable: {type(e).__name__}") from e
        return [DeferredDispatch.from_json(r) for r in raws if r is not None]

    async def count(self) -> int:
        try:
            await self._prune(time.time())
            return int(await self._client.zcard(self._order))
        except Exception as e:
            raise RegistryError(f"deferred queue unavailable: {type(e).__name__}") from e

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()
