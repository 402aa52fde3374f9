"""Who agrees on ``job_id``: the idempotency store behind a small interface.

One replica: :class:`MemoryJobRegistry` (the default). Several replicas behind one dispatcher:
:class:`RedisJobRegistry`, so a retry that lands on another replica still gets the first answer
and never a second participant.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol

from app.errors import ServiceError
from app.jobs.records import StoredAnswer


class RegistryError(ServiceError):
    """The shared store could not be reached; the offer should be retried."""

    retryable = True


class JobRegistry(Protocol):
    async def claim(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
        """Atomically record ``answer`` for ``job_id`` unless one is already there. ``None``
        when this call claimed it, else the answer recorded first."""
        ...

    async def get(self, job_id: str) -> StoredAnswer | None: ...

    async def forget(self, job_id: str) -> None:
        """Undo a claim whose job never started (a reservation released or expired)."""
        ...

    async def aclose(self) -> None: ...


class MemoryJobRegistry:
    """In-process store, bounded by count and age. Every method completes without suspending,
    so a claim is atomic on the event loop.

    An entry is a tuple of a float and strings only, which the garbage collector stops tracking:
    up to ``max_entries`` of them live for an hour, and as objects they would make every full
    collection walk them all."""

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        # job_id -> (claimed at, participant identity, name, metadata)
        self._entries: OrderedDict[str, tuple[float, str, str, str]] = OrderedDict()
        self._next_prune = 0.0

    def _prune(self, now: float) -> None:
        """Drop the oldest entries past their age or beyond the count (insertion order is age
        order). Age is checked at most once a second; the count on every insert."""
        if now < self._next_prune and len(self._entries) <= self._max:
            return
        self._next_prune = now + 1.0
        entries = self._entries
        while entries:
            job_id = next(iter(entries))
            if now - entries[job_id][0] <= self._ttl and len(entries) <= self._max:
                break
            del entries[job_id]

    def _lookup(self, job_id: str, now: float) -> StoredAnswer | None:
        entry = self._entries.get(job_id)
        if entry is None or now - entry[0] > self._ttl:
            return None
        return StoredAnswer(
            participant_identity=entry[1], participant_name=entry[2], participant_metadata=entry[3]
        )

    def lookup(self, job_id: str) -> StoredAnswer | None:
        """:meth:`get` without a coroutine, for the job manager's decision."""
        return self._lookup(job_id, time.monotonic())

    def claim_now(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
        """:meth:`claim` without a coroutine, for the job manager's decision."""
        now = time.monotonic()
        existing = self._lookup(job_id, now)
        if existing is not None:
            return existing
        self._entries.pop(job_id, None)  # an expired entry: the new one goes to the end
        self._entries[job_id] = (
            now,
            answer.participant_identity,
            answer.participant_name,
            answer.participant_metadata,
        )
        self._prune(now)
        return None

    async def claim(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
        return self.claim_now(job_id, answer)

    async def get(self, job_id: str) -> StoredAnswer | None:
        return self.lookup(job_id)

    async def forget(self, job_id: str) -> None:
        self._entries.pop(job_id, None)

    async def aclose(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisJobRegistry:
    """Shared store: ``SET key answer NX EX ttl`` decides which replica owns a ``job_id``."""

    def __init__(self, *, client: Any, ttl: float, prefix: str = "external-agent:job:") -> None:
        self._client = client
        self._ttl = max(1, int(ttl))
        self._prefix = prefix
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, ttl: float) -> RedisJobRegistry:
        from redis.asyncio import Redis

        return cls(client=Redis.from_url(url), ttl=ttl)

    async def claim(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
        key = self._prefix + job_id
        try:
            created = await self._client.set(key, answer.to_json(), nx=True, ex=self._ttl)
            if created:
                return None
            raw = await self._client.get(key)
        except Exception as e:  # redis-py raises many types; translate at the edge
            raise RegistryError(f"job registry unavailable: {type(e).__name__}") from e
        if raw is None:  # expired between the two calls: try once more
            return await self.claim(job_id, answer)
        return StoredAnswer.from_json(raw)

    async def get(self, job_id: str) -> StoredAnswer | None:
        try:
            raw = await self._client.get(self._prefix + job_id)
        except Exception as e:
            raise RegistryError(f"job registry unavailable: {type(e).__name__}") from e
        return StoredAnswer.from_json(raw) if raw is not None else None

    async def forget(self, job_id: str) -> None:
        try:
            await self._client.delete(self._prefix + job_id)
        except Exception as e:
            raise RegistryError(f"job registry unavailable: {type(e).__name__}") from e

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
