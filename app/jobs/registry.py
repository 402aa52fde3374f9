"""Who agrees on ``job_id``: the idempotency store behind a small interface.

One replica: :class:`MemoryJobRegistry` (the default). Several replicas behind one dispatcher:
:class:`RedisJobRegistry`, so a retry that lands on another replica still gets the first answer
and never a second participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from typing import Any, Protocol

import structlog

from app.errors import ServiceError
from app.jobs.records import StoredAnswer

log = structlog.get_logger("app.jobs.registry")


class RegistryError(ServiceError):
    """The shared store could not be reached; the offer should be retried."""

    retryable = True


class JobRegistry(Protocol):
    async def claim(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
        """Atomically record ``answer`` for ``job_id`` unless one is already there. ``None``
        when this call claimed it, else the answer recorded first."""
        ...

    async def get(self, job_id: str) -> StoredAnswer | None: ...

    @property
    def problem(self) -> str | None:
        """Why jobs cannot be claimed right now (for readiness), or ``None``."""
        ...

    async def start(self) -> None:
        """Begin watching the store, if it needs watching (idempotent)."""
        ...

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

    @property
    def problem(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisJobRegistry:
    """Shared store: ``SET key answer NX EX ttl`` decides which replica owns a ``job_id``.

    Redis may restart empty (no persistence) and lose every claim; a retry of a running job would
    then be claimed again elsewhere and a second agent would join. So the store carries an *epoch*
    marker, and a claim goes through only while the marker is the one this replica last saw
    (``WATCH``/``MULTI``). When the marker is gone or new, every replica re-asserts the claims it
    made (``SET NX`` with their remaining time) and answers "recovering" for ``settle`` seconds,
    long enough for the others' watchers (every ``watch_interval``) to have done the same.
    :attr:`problem` (for readiness) says what is wrong, or ``None``.
    """

    def __init__(
        self,
        *,
        client: Any,
        ttl: float,
        prefix: str = "external-agent:job:",
        watch_interval: float = 1.0,
        settle: float | None = None,
        max_held: int = 100_000,
    ) -> None:
        self._client = client
        self._ttl = max(1, int(ttl))
        self._prefix = prefix
        self._marker = prefix.rstrip(":") + "-registry-epoch"
        self._interval = watch_interval
        self._settle = 2 * watch_interval + 0.5 if settle is None else settle
        self._max_held = max_held
        # job_id -> (expires at, monotonic; the answer as stored): the claims this replica made
        self._held: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._epoch: bytes | None = None  # the marker last seen (kept through an outage)
        self._verified = False  # the marker was read since the last error
        self._settle_until = 0.0
        self._problem: str | None = "job registry not checked yet"
        self._watcher: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, ttl: float, max_held: int = 100_000) -> RedisJobRegistry:
        from redis.asyncio import Redis

        # Bounded waits: an unreachable Redis must turn into a clear 503, not a hung request.
        client = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client=client, ttl=ttl, max_held=max_held)

    @property
    def problem(self) -> str | None:
        """Why new jobs cannot be claimed now (unreachable, recovering), or ``None``."""
        if self._problem is None and time.monotonic() < self._settle_until:
            return "job registry recovering after a restart"
        return self._problem

    async def start(self) -> None:
        """Check the store once and watch it from now on (idempotent)."""
        if self._watcher is None and not self._closed:
            with contextlib.suppress(RegistryError):
                await self._sync()
            self._watcher = asyncio.create_task(self._watch(), name="job-registry-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            with contextlib.suppress(RegistryError):
                await self._sync()

    def _unavailable(self, e: Exception) -> RegistryError:
        self._verified = False
        self._problem = f"job registry unavailable: {type(e).__name__}"
        log.warning("job_registry_unavailable", error=type(e).__name__)
        return RegistryError(self._problem)

    async def _sync(self) -> None:
        """Read the epoch marker (creating it if Redis is empty); when it is not the one seen
        last, re-assert this replica's claims and settle."""
        async with self._sync_lock:
            try:
                epoch = await self._client.get(self._marker)
                created = False
                if epoch is None:
                    created = bool(
                        await self._client.set(self._marker, uuid.uuid4().hex.encode(), nx=True)
                    )
                    epoch = await self._client.get(self._marker)
                if epoch != self._epoch or created:
                    reasserted = await self._reassert()
                    if created or self._epoch is not None:
                        self._settle_until = time.monotonic() + self._settle
                    log.info("job_registry_epoch", created=created, reasserted=reasserted)
                    self._epoch = epoch
                self._verified = True
            except Exception as e:  # redis-py raises many types; translate at the edge
                raise self._unavailable(e) from e
            if self._problem is not None:
                log.info("job_registry_available")
            self._problem = None

    async def _reassert(self) -> int:
        now = time.monotonic()
        while self._held and next(iter(self._held.values()))[0] <= now:
            self._held.popitem(last=False)
        if not self._held:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id, (expires, raw) in self._held.items():
                pipe.set(self._prefix + job_id, raw, nx=True, ex=max(1, int(expires - now)))
            await pipe.execute()
        return len(self._held)

    async def claim(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
        from redis.exceptions import WatchError

        if not self._verified:
            await self._sync()
        if time.monotonic() < self._settle_until:
            raise RegistryError("job registry recovering after a restart")
        key = self._prefix + job_id
        raw_answer = answer.to_json()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(self._marker)
                if await pipe.get(self._marker) != self._epoch:
                    self._verified = False  # Redis restarted: the next call re-syncs, settles
                    raise RegistryError("job registry restarted; re-asserting claims")
                pipe.multi()
                pipe.set(key, raw_answer, nx=True, ex=self._ttl)
                pipe.get(key)
                created, raw = await pipe.execute()
        except RegistryError:
            raise
        except WatchError as e:  # the marker changed under us: a restart
            self._verified = False
            raise RegistryError("job registry restarted; re-asserting claims") from e
        except Exception as e:
            raise self._unavailable(e) from e
        if created:
            self._hold(job_id, raw_answer)
            return None
        if raw is None:  # expired between the two commands: try once more
            return await self.claim(job_id, answer)
        return StoredAnswer.from_json(raw)

    def _hold(self, job_id: str, raw: str) -> None:
        self._held.pop(job_id, None)
        self._held[job_id] = (time.monotonic() + self._ttl, raw)
        while len(self._held) > self._max_held:
            self._held.popitem(last=False)

    async def get(self, job_id: str) -> StoredAnswer | None:
        try:
            raw = await self._client.get(self._prefix + job_id)
        except Exception as e:
            raise self._unavailable(e) from e
        return StoredAnswer.from_json(raw) if raw is not None else None

    async def forget(self, job_id: str) -> None:
        self._held.pop(job_id, None)
        try:
            await self._client.delete(self._prefix + job_id)
        except Exception as e:
            raise self._unavailable(e) from e

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await self._client.aclose()
