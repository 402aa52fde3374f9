"""Deferred native dispatch: no room left behind when the worker was full.

A stock LiveKit server offers a job to the available workers and, when every one answers
``unavailable``, drops the dispatch for good. The worker therefore tells the :class:`Redispatcher`
about every ``JT_ROOM`` offer it refused for capacity; the room waits in a
:class:`~app.dispatch.deferred.DeferredStore` (arrival order, bounded, TTL), and whenever a slot is
free the oldest room still waiting is re-dispatched through the LiveKit API: ``CreateDispatch``
for that room and our agent name (with the original metadata), then the dispatch that got no agent
is deleted. Before that the room is checked: gone, or its dispatch served by another worker in the
meantime, and it is dropped instead.

A re-issued dispatch holds its slot (``reissue_timeout``) until its offer arrives, so one free slot
re-issues one room; if that offer is refused again (a webhook job took the slot), the room goes
back in the queue with its first arrival time, ahead of later ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, Protocol

import aiohttp
import structlog

from app.dispatch.config import DeferSettings
from app.dispatch.deferred import DeferredDispatch, DeferredStore
from app.dispatch.ports import DispatchError
from app.jobs.registry import RegistryError

log = structlog.get_logger("app.dispatch.redispatch")

RoomState = Literal["waiting", "served", "gone"]
Outcome = Literal[
    "deferred", "already_waiting", "full", "reissued", "served", "gone", "expired", "failed"
]


class RedispatchError(DispatchError):
    """The LiveKit API did not answer a re-dispatch call; the room stays in the queue."""

    retryable = True


class DispatchAPI(Protocol):
    """What the redispatcher needs from the LiveKit server API."""

    async def room_state(self, entry: DeferredDispatch) -> RoomState:
        """``gone``: no such room, or its dispatch was deleted; ``served``: the dispatch we saw
        refused has a job after all (another worker took it); else ``waiting``."""
        ...

    async def redispatch(self, entry: DeferredDispatch) -> str:
        """Create a dispatch like ``entry``'s, delete the one that got no agent; the new id."""
        ...

    async def aclose(self) -> None: ...


class LiveKitDispatchAPI:
    """:class:`DispatchAPI` over ``livekit-api`` (``RoomService`` and ``AgentDispatchService``)."""

    def __init__(self, *, url: str, api_key: str, api_secret: str, timeout: float = 5.0) -> None:
        self._url = url
        self._key = api_key
        self._secret = api_secret
        self._timeout = timeout
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:  # its aiohttp session needs the running loop
            from livekit import api

            self._api = api.LiveKitAPI(
                self._url, self._key, self._secret,
                timeout=aiohttp.ClientTimeout(total=self._timeout), failover=False,
            )
        return self._api

    async def room_exists(self, room: str) -> bool:
        from livekit import api

        try:
            rooms = await self._client().room.list_rooms(api.ListRoomsRequest(names=[room]))
        except (api.TwirpError, aiohttp.ClientError, TimeoutError) as e:
            raise RedispatchError(f"LiveKit API: {type(e).__name__}: {e}") from e
        return bool(rooms.rooms)

    async def room_state(self, entry: DeferredDispatch) -> RoomState:
        from livekit import api

        if not await self.room_exists(entry.room):
            return "gone"
        lk = self._client()
        try:
            if not entry.dispatch_id:
                return "waiting"
            dispatches = await lk.agent_dispatch.list_dispatch(entry.room)
        except (api.TwirpError, aiohttp.ClientError, TimeoutError) as e:
            raise RedispatchError(f"LiveKit API: {type(e).__name__}: {e}") from e
        original = next((d for d in dispatches if d.id == entry.dispatch_id), None)
        if original is None:
            return "gone"
        return "served" if original.state.jobs else "waiting"

    async def redispatch(self, entry: DeferredDispatch) -> str:
        from livekit import api

        lk = self._client()
        try:
            created = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
                agent_name=entry.agent_name, room=entry.room, metadata=entry.metadata,
            ))
        except (api.TwirpError, aiohttp.ClientError, TimeoutError) as e:
            raise RedispatchError(f"LiveKit API: {type(e).__name__}: {e}") from e
        if entry.dispatch_id:
            try:
                await lk.agent_dispatch.delete_dispatch(entry.dispatch_id, entry.room)
            except (api.TwirpError, aiohttp.ClientError, TimeoutError) as e:
                log.info("redispatch_old_dispatch_kept", room=entry.room,
                         dispatch_id=entry.dispatch_id, error=repr(e))
        return str(created.id)

    async def aclose(self) -> None:
        lk, self._api = self._api, None
        if lk is not None:
            await lk.aclose()


class Redispatcher:
    """Owns the deferred queue's use on this replica: ``defer`` on a refusal, ``offered`` on every
    offer, and one task that re-issues rooms while slots are free. ``aclose`` is idempotent."""

    name = "deferred-dispatch"

    def __init__(
        self,
        *,
        store: DeferredStore,
        api: DispatchAPI,
        settings: DeferSettings,
        free_slots: Callable[[], int],
        on_outcome: Callable[[Outcome, int], None] | None = None,
        tick: float = 1.0,
    ) -> None:
        self._store = store
        self._api = api
        self._settings = settings
        self._free_slots = free_slots
        self._on_outcome = on_outcome
        self._tick = tick
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._inflight: dict[str, float] = {}
        """Re-issued dispatch id -> deadline: slots promised to offers not yet arrived."""
        self._origin: OrderedDict[str, float] = OrderedDict()
        """Re-issued dispatch id -> first_seen of the room it carries (bounded)."""
        self._offered: OrderedDict[str, None] = OrderedDict()
        """Dispatch ids whose offer came while their CreateDispatch was still answering."""
        self._creating = 0
        self._created = asyncio.Event()
        self._created.set()
        self._waiting = 0
        self.counts: dict[str, int] = {}

    # -- what the worker tells it ---------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Offers refused now can still be remembered (the worker stays ``available``)."""
        return self._settings.enabled and not self._closed and (
            self._waiting < self._settings.max_entries
        )

    @property
    def waiting(self) -> int:
        """Rooms waiting, as last counted (the shared queue may hold others' too)."""
        return self._waiting

    def offered(self, dispatch_id: str) -> None:
        """An offer arrived for ``dispatch_id``: a slot promised to it is no longer held."""
        if not dispatch_id:
            return
        if self._inflight.pop(dispatch_id, None) is None and self._creating:
            self._remember(self._offered, dispatch_id, None)

    def slot_freed(self, *_: object) -> None:
        """A job ended or a reservation went: look at the queue now (also usable as the job
        manager's end callback)."""
        self._wake.set()

    async def defer(self, *, room: str, agent_name: str, metadata: str, dispatch_id: str,
                    job_id: str) -> bool:
        """Remember a room whose offer was refused for capacity. ``False`` when it could not be
        (queue full, store unreachable, closing)."""
        if not self._settings.enabled or self._closed:
            return False
        if dispatch_id and dispatch_id not in self._origin and self._creating:
            # The offer may be for a dispatch we are creating right now: learn its origin first.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.reissue_timeout):
                    await self._created.wait()
        first_seen = self._origin.get(dispatch_id) or time.time()
        entry = DeferredDispatch(room=room, agent_name=agent_name, metadata=metadata,
                                 dispatch_id=dispatch_id, job_id=job_id, first_seen=first_seen)
        try:
            waiting_before = await self._store.count()
            added = await self._store.add(entry)
            self._waiting = await self._store.count()
        except RegistryError as e:
            log.warning("dispatch_defer_failed", room=room, job_id=job_id, error=e.message)
            self._count("failed")
            return False
        if not added:
            self._count("full")
            log.warning("dispatch_not_deferred_queue_full", room=room, job_id=job_id,
                        waiting=self._waiting)
            return False
        self._count("deferred" if self._waiting > waiting_before else "already_waiting")
        log.info("dispatch_deferred", room=room, job_id=job_id, dispatch_id=dispatch_id,
                 waiting=self._waiting)
        self._wake.set()
        return True

    async def snapshot(self) -> dict[str, Any]:
        """``GET /jobs``'s ``deferred`` section."""
        now = time.time()
        try:
            entries = await self._store.entries()
        except RegistryError as e:
            return {"error": e.message, "rooms": []}
        return {
            "waiting": len(entries),
            "max_entries": self._settings.max_entries,
            "reissues_in_flight": len(self._inflight),
            "rooms": [e.view(now) for e in entries],
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="dispatch-redispatch")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._api.aclose()
        await self._store.aclose()

    # -- the re-issue loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._reissue_while_free()
                self._waiting = await self._store.count()
            except RegistryError as e:
                log.warning("redispatch_queue_unavailable", error=e.message)
            except Exception:  # a bug must not end re-dispatching for good
                log.exception("redispatch_round_crashed")

    def _free(self) -> int:
        now = time.monotonic()
        for dispatch_id, deadline in list(self._inflight.items()):
            if deadline < now:
                del self._inflight[dispatch_id]
        return self._free_slots() - len(self._inflight)

    async def _reissue_while_free(self) -> None:
        while self._free() > 0:
            entry, expired = await self._store.take()
            if expired:
                self._count("expired", expired)
                log.info("deferred_dispatches_expired", count=expired)
            if entry is None:
                return
            try:
                state = await self._api.room_state(entry)
                if state != "waiting":
                    self._count(state)
                    log.info("deferred_dispatch_dropped", room=entry.room, state=state)
                    continue
                new_id = await self._create(entry)
            except DispatchError as e:
                log.warning("redispatch_failed", room=entry.room, error=e.message)
                self._count("failed")
                await self._store.add(entry)  # back in its place (first_seen unchanged)
                return
            self._count("reissued")
            log.info("dispatch_reissued", room=entry.room, dispatch_id=new_id,
                     replaces=entry.dispatch_id,
                     waited_s=round(time.time() - entry.first_seen, 3))

    async def _create(self, entry: DeferredDispatch) -> str:
        self._creating += 1
        self._created.clear()
        try:
            new_id = await self._api.redispatch(entry)
            self._remember(self._origin, new_id, entry.first_seen)
            if new_id in self._offered:  # its offer came before this answer
                del self._offered[new_id]
            else:
                self._inflight[new_id] = time.monotonic() + self._settings.reissue_timeout
            return new_id
        finally:
            self._creating -= 1
            if not self._creating:
                self._created.set()

    def _remember(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > 4 * self._settings.max_entries:
            table.popitem(last=False)

    def _count(self, outcome: Outcome, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n
        if self._on_outcome is not None:
            self._on_outcome(outcome, n)
