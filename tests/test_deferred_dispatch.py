"""Deferred native dispatch: rooms refused for capacity wait in arrival order (bounded, TTL, shared
through Redis) and are re-dispatched through the LiveKit API when a slot frees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import pytest
from agent_protocol_server import AgentProtocolServer, make_job
from dispatch_fakes import FakeJobManager, eventually
from livekit.protocol import agent as pb

from app.dispatch.config import DeferSettings, WorkerSettings
from app.dispatch.deferred import (
    DeferredDispatch,
    DeferredStore,
    MemoryDeferredStore,
    RedisDeferredStore,
)
from app.dispatch.redispatch import Redispatcher, RedispatchError, RoomState
from app.dispatch.worker import AgentWorker

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def entry(room: str, at: float, **kw: Any) -> DeferredDispatch:
    values: dict[str, Any] = {
        "room": room, "agent_name": "external-agent", "metadata": "", "dispatch_id": f"AD_{room}",
        "job_id": f"AJ_{room}", "first_seen": at,
    }
    values.update(kw)
    return DeferredDispatch(**values)


StoreFactory = Callable[..., DeferredStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    server = fakeredis.FakeServer()

    def factory(*, ttl: float = 60.0, max_entries: int = 10) -> DeferredStore:
        if request.param == "memory":
            return MemoryDeferredStore(ttl=ttl, max_entries=max_entries)
        return RedisDeferredStore(client=fakeredis.FakeAsyncRedis(server=server), ttl=ttl,
                                  max_entries=max_entries)

    return factory


async def drain(store: DeferredStore) -> list[str]:
    rooms = []
    while (taken := (await store.take())[0]) is not None:
        rooms.append(taken.room)
    return rooms


# -- the queue --------------------------------------------------------------------------------

async def test_rooms_come_out_oldest_first_and_a_room_waits_once(make_store: StoreFactory) -> None:
    store = make_store()
    now = time.time()
    for room, at in [("b", now - 2), ("c", now - 1), ("a", now - 3)]:
        assert await store.add(entry(room, at))
    assert await store.add(entry("b", now, job_id="AJ_later"))  # already waiting: kept first
    assert await store.count() == 3
    assert [e.room for e in await store.entries()] == ["a", "b", "c"]
    first, _ = await store.take()
    assert first is not None and first.room == "a"
    second, _ = await store.take()
    assert second is not None and second.room == "b" and second.job_id == "AJ_b"
    assert await drain(store) == ["c"]
    await store.aclose()


async def test_the_queue_is_bounded_and_old_rooms_expire(make_store: StoreFactory) -> None:
    store = make_store(ttl=30.0, max_entries=2)
    now = time.time()
    assert await store.add(entry("old", now - 31))  # already past its TTL
    assert await store.take() == (None, 1)  # dropped as expired, not handed out
    assert await store.add(entry("x", now))
    assert await store.add(entry("y", now))
    assert not await store.add(entry("z", now))  # full: refused, nothing lost silently
    assert await store.count() == 2
    assert await drain(store) == ["x", "y"]
    await store.aclose()


async def test_replicas_sharing_redis_see_one_queue() -> None:
    server = fakeredis.FakeServer()
    a, b = (RedisDeferredStore(client=fakeredis.FakeAsyncRedis(server=server), ttl=60,
                               max_entries=10) for _ in "ab")
    now = time.time()
    await a.add(entry("r1", now - 1))
    await b.add(entry("r1", now))  # the same room refused by the second replica: one entry
    await b.add(entry("r2", now))
    assert await a.count() == 2
    taken, _ = await b.take()
    assert taken is not None and taken.room == "r1" and taken.first_seen == pytest.approx(now - 1)
    assert [e.room for e in await a.entries()] == ["r2"]
    await a.aclose()
    await b.aclose()


# -- the redispatcher -------------------------------------------------------------------------

class FakeDispatchAPI:
    """Scripted LiveKit API: room states per room, failures on demand, calls recorded."""

    def __init__(self) -> None:
        self.states: dict[str, RoomState] = {}
        self.issued: list[tuple[str, str]] = []
        self.fail = 0
        self.closed = False
        self.on_issue: Callable[[str], None] | None = None

    async def room_state(self, e: DeferredDispatch) -> RoomState:
        return self.states.get(e.room, "waiting")

    async def redispatch(self, e: DeferredDispatch) -> str:
        if self.fail:
            self.fail -= 1
            raise RedispatchError("LiveKit API: ServerError(unavailable)")
        new_id = f"AD_re{len(self.issued)}_{e.room}"
        self.issued.append((e.room, new_id))
        if self.on_issue is not None:
            self.on_issue(new_id)
        return new_id

    async def aclose(self) -> None:
        self.closed = True


class Slots:
    def __init__(self, free: int = 0) -> None:
        self.free = free

    def __call__(self) -> int:
        return self.free


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Redispatcher, FakeDispatchAPI, Slots]]:
    api, slots = FakeDispatchAPI(), Slots()
    r = Redispatcher(store=MemoryDeferredStore(ttl=60, max_entries=5), api=api,
                     settings=DeferSettings(max_entries=5, reissue_timeout=0.3),
                     free_slots=slots, tick=0.02)
    await r.start()
    yield r, api, slots
    await r.aclose()
    assert api.closed


async def defer(r: Redispatcher, room: str, dispatch_id: str | None = None) -> bool:
    return await r.defer(room=room, agent_name="external-agent", metadata=f"m-{room}",
                         dispatch_id=dispatch_id or f"AD_{room}", job_id=f"AJ_{room}")


async def test_freed_slots_reissue_rooms_in_arrival_order_one_per_slot(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, api, slots = rig
    for room in ("r1", "r2", "r3"):
        assert await defer(r, room)
    assert r.waiting == 3
    await asyncio.sleep(0.1)
    assert api.issued == []  # no free slot, nothing re-issued

    slots.free = 1
    r.slot_freed()
    await eventually(lambda: len(api.issued) == 1)
    await asyncio.sleep(0.1)
    assert [room for room, _ in api.issued] == ["r1"]  # the slot is promised to r1's offer

    r.offered(api.issued[0][1])  # its offer arrived (and took the slot)
    await eventually(lambda: len(api.issued) == 2)
    assert [room for room, _ in api.issued] == ["r1", "r2"]
    snap = await r.snapshot()
    assert [x["room"] for x in snap["rooms"]] == ["r3"]
    assert r.counts["deferred"] == 3 and r.counts["reissued"] == 2


async def test_a_promised_slot_is_freed_when_the_offer_never_comes(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, api, slots = rig
    await defer(r, "r1")
    await defer(r, "r2")
    slots.free = 1
    r.slot_freed()
    await eventually(lambda: len(api.issued) == 1)
    await eventually(lambda: len(api.issued) == 2, within=2.0)  # after reissue_timeout


async def test_rooms_gone_or_served_elsewhere_are_dropped_not_dispatched(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, api, slots = rig
    api.states = {"gone": "gone", "served": "served"}
    for room in ("gone", "served", "live"):
        await defer(r, room)
    slots.free = 3
    r.slot_freed()
    await eventually(lambda: len(api.issued) == 1)
    assert api.issued[0][0] == "live"
    assert r.counts["gone"] == 1 and r.counts["served"] == 1


async def test_an_api_failure_keeps_the_room_in_its_place(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, api, slots = rig
    api.fail = 1
    await defer(r, "r1")
    await defer(r, "r2")
    slots.free = 1
    r.slot_freed()
    await eventually(lambda: len(api.issued) == 1, within=2.0)
    assert api.issued[0][0] == "r1"
    assert r.counts["failed"] == 1


async def test_a_reissued_room_refused_again_keeps_its_place_ahead_of_later_rooms(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, api, slots = rig
    await defer(r, "early")
    slots.free = 1
    r.slot_freed()
    await eventually(lambda: len(api.issued) == 1)
    slots.free = 0  # a webhook job took the slot before the offer came
    await defer(r, "late")
    new_id = api.issued[0][1]
    r.offered(new_id)
    assert await defer(r, "early", dispatch_id=new_id)  # the re-issued offer, refused again
    assert [e["room"] for e in (await r.snapshot())["rooms"]] == ["early", "late"]


async def test_a_full_queue_refuses_and_stops_accepting(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, _, _ = rig
    for i in range(5):
        assert await defer(r, f"r{i}")
    assert not r.accepting
    assert not await defer(r, "r5")
    assert r.counts["full"] == 1


async def test_an_offer_that_races_its_create_answer_does_not_hold_a_slot(
    rig: tuple[Redispatcher, FakeDispatchAPI, Slots],
) -> None:
    r, api, slots = rig
    api.on_issue = r.offered  # the server's offer arrives before CreateDispatch answers
    for room in ("r1", "r2"):
        await defer(r, room)
    slots.free = 1
    r.slot_freed()
    await eventually(lambda: len(api.issued) == 2, within=0.25)  # well before reissue_timeout


# -- through the worker -----------------------------------------------------------------------

async def test_a_full_worker_stays_available_defers_the_room_and_reissues_it_when_a_job_ends(
) -> None:
    server = AgentProtocolServer(api_key="devkey", api_secret=SECRET)
    await server.start()
    manager = FakeJobManager(capacity=1)
    api = FakeDispatchAPI()
    r = Redispatcher(store=MemoryDeferredStore(ttl=60, max_entries=5), api=api,
                     settings=DeferSettings(), tick=0.02,
                     free_slots=lambda: manager.max_jobs - manager.used_slots)
    worker = AgentWorker(
        manager=manager,
        settings=WorkerSettings(reconnect_initial_delay=0.02, reconnect_max_delay=0.1,
                                status_interval=60.0),
        livekit_url=server.url, api_key="devkey", api_secret=SECRET, redispatcher=r,
    )
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await worker.wait_registered()
        first = make_job("AJ_1", room="room-a")
        assert (await server.request_availability(first)).available
        await server.assign(first, token="tok")
        await eventually(lambda: manager.starts == ["AJ_1"])
        status = await server.wait_for(
            lambda m: m.kind == "update_worker" and m.msg.update_worker.job_count == 1)
        assert status.msg.update_worker.status == pb.WS_AVAILABLE
        assert status.msg.update_worker.load == pytest.approx(0.7 * 0.99)  # under target_load

        second = make_job("AJ_2", room="room-b", metadata='{"greeting":"hi"}')
        assert not (await server.request_availability(second)).available
        await eventually(lambda: r.waiting == 1)
        publisher = make_job("AJ_3", room="room-c", job_type=pb.JT_PUBLISHER, participant="p")
        assert not (await server.request_availability(publisher)).available
        await asyncio.sleep(0.05)
        assert r.waiting == 1  # room jobs only
        assert api.issued == []

        manager.finish("AJ_1", "completed")
        await eventually(lambda: len(api.issued) == 1)
        assert api.issued[0][0] == "room-b"
    finally:
        await worker.aclose()
        await server.aclose()
    assert api.closed
