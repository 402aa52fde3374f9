"""Failover between replicas in one process: two job managers sharing a (fake) Redis.

What crosses a real room (the agent back in the room, the caller's view) is proven in
``test_failover_real.py``; here: leases, checkpoints, claims, fencing, the record's legs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
from conftest import make_settings
from dispatch_fakes import eventually

from agents.job import JobOutcome, JobReporter, JobSpec
from app.admission import JobRequest
from app.jobs.failover import HANDED_OVER, Failover, FailoverSettings
from app.jobs.failover_store import FailoverStore
from app.jobs.manager import JobManager
from app.jobs.registry import MemoryJobRegistry
from app.metrics import Metrics
from app.settings import Settings

LEASE = 1.0
KEY = "APIfailovertest"
SECRET = "a-long-enough-api-secret-for-failover-tests-0123456789"


@dataclass
class Running:
    spec: JobSpec
    reporter: JobReporter
    end: asyncio.Future[str]


@dataclass
class Body:
    """A job body that checkpoints when told and runs until ended or cancelled."""

    jobs: dict[str, Running] = field(default_factory=dict)
    started: asyncio.Queue[Running] = field(default_factory=asyncio.Queue)

    async def __call__(self, spec: JobSpec, reporter: JobReporter) -> JobOutcome:
        run = Running(spec=spec, reporter=reporter,
                      end=asyncio.get_running_loop().create_future())
        self.jobs[spec.job_id] = run
        reporter.state("running")
        self.started.put_nowait(run)
        return JobOutcome(end_reason=await run.end)

    async def next(self) -> Running:
        async with asyncio.timeout(10):
            return await self.started.get()


class Rooms:
    def __init__(self) -> None:
        self.gone: set[str] = set()

    async def exists(self, url: str, room: str) -> bool | None:
        return room not in self.gone

    async def aclose(self) -> None:
        return None


@dataclass
class Replica:
    name: str
    manager: JobManager
    failover: Failover
    body: Body

    async def aclose(self) -> None:
        await self.failover.aclose()
        await self.manager.aclose()


def settings(**kw: Any) -> Settings:
    return make_settings(registry="redis", redis_url="redis://unused", livekit_api_key=KEY,
                         livekit_api_secret=SECRET, max_jobs=2, **kw)


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeServer]:
    yield fakeredis.FakeServer()


@pytest.fixture
def lease() -> float:
    return LEASE


@pytest.fixture
async def replicas(redis: fakeredis.FakeServer, lease: float) -> AsyncIterator[list[Replica]]:
    made: list[Replica] = []
    rooms = Rooms()

    async def make(name: str) -> Replica:
        cfg = FailoverSettings(enabled=True, lease_seconds=lease, scan_interval=0.1,
                               replica=name)
        body = Body()
        metrics = Metrics()
        manager = JobManager(settings=settings(), job_body=body,
                             registry=MemoryJobRegistry(ttl=60, max_entries=100),
                             metrics=metrics)
        store = FailoverStore(client=fakeredis.FakeAsyncRedis(server=redis), owner=name,
                              lease_seconds=lease, checkpoint_ttl=600)
        failover = Failover(settings=cfg, store=store, manager=manager, rooms=rooms,  # type: ignore[arg-type]
                            livekit_url="ws://127.0.0.1:7880", metrics=metrics)
        await failover.start()
        replica = Replica(name=name, manager=manager, failover=failover, body=body)
        made.append(replica)
        return replica

    await make("a")
    await make("b")
    yield made
    for r in made:
        await r.aclose()


def request(job_id: str = "J1", room: str = "room-1") -> JobRequest:
    return JobRequest(source="webhook", job_id=job_id, dispatch_id="D1", job_type="JT_ROOM",
                      room_name=room, metadata='{"persona": {"greeting": "hi"}}',
                      access_token="tok", server_url="ws://127.0.0.1:7880")


async def wait_for(predicate: Any) -> None:
    await eventually(predicate, within=10.0)


async def lose(replica: Replica) -> None:
    """The replica dies at once: nothing it holds is released (as under SIGKILL)."""
    failover = replica.failover
    failover._closed = True  # noqa: SLF001 (no release from the job ends below)
    tasks = [t for t in (failover._watcher,  # noqa: SLF001
                         *(lease.task for lease in failover._leases.values()))  # noqa: SLF001
             if t is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await failover._store.aclose()  # noqa: SLF001
    await replica.manager.aclose()


async def test_a_lost_replicas_job_goes_on_elsewhere_with_its_checkpoint(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    assert (await a.manager.admit(request())).verdict == "accepted"
    first = await a.body.next()
    assert first.spec.resume is None
    first.reporter.checkpoint({"v": 1, "conversation": {"turns": 2}})
    await wait_for(lambda: a.failover.holding == 1)
    await asyncio.sleep(0.3)  # the checkpoint is written with the next renewal
    await lose(a)

    second = await b.body.next()
    assert second.spec.job_id == "J1" and second.spec.room_name == "room-1"
    assert second.spec.resume == {"v": 1, "conversation": {"turns": 2}}
    assert second.spec.metadata == '{"persona": {"greeting": "hi"}}'  # overrides go on
    assert second.spec.access_token != "tok"  # minted here, for the same identity
    assert second.spec.agent_identity == first.spec.agent_identity
    job = b.manager.get_job("J1")
    assert job is not None
    assert [leg["replica"] for leg in job.legs] == ["a", "b"]
    assert job.legs[0]["token"] == 1 and job.legs[1]["token"] == 2
    assert 0 < job.legs[1]["gap_s"] < 5 * LEASE
    assert job.summary()["legs"][0]["lost_at"] is not None
    exposition = b.manager._metrics.render().decode()  # noqa: SLF001
    assert 'external_agent_failover_events_total{outcome="taken_over"} 1.0' in exposition
    assert "external_agent_failover_leases 1.0" in exposition

    second.end.set_result("participant_left")
    await wait_for(lambda: b.manager.get_job("J1").state == "completed")  # type: ignore[union-attr]
    await wait_for(lambda: b.failover.holding == 0)
    await asyncio.sleep(3 * LEASE)
    assert b.body.started.empty()  # ended and released: nobody takes it over again


async def test_a_job_that_ends_normally_is_never_taken_over(replicas: list[Replica]) -> None:
    a, b = replicas
    await a.manager.admit(request())
    run = await a.body.next()
    await wait_for(lambda: a.failover.holding == 1)
    run.end.set_result("participant_left")
    await wait_for(lambda: a.failover.holding == 0)
    await asyncio.sleep(2 * LEASE)
    assert b.body.started.empty()
    job = a.manager.get_job("J1")
    assert job is not None and job.state == "completed" and len(job.legs) == 1


async def test_a_replica_that_loses_its_lease_stops_its_agent(
    replicas: list[Replica], redis: fakeredis.FakeServer,
) -> None:
    a, b = replicas
    await a.manager.admit(request())
    await a.body.next()
    await wait_for(lambda: a.failover.holding == 1)
    # Another holder took the lease (as after a stall past its expiry): a stops at once.
    client = fakeredis.FakeAsyncRedis(server=redis)
    await client.set("external-agent:failover:lease:J1", "z|9")
    await wait_for(lambda: a.manager.get_job("J1").state == "cancelled")  # type: ignore[union-attr]
    job = a.manager.get_job("J1")
    assert job is not None and job.reason == "failover: lease taken over by another replica"
    assert b.body.started.empty()


# Both replicas share this process's event loop: a longer lease keeps a stall of the loop under
# load (which delays the owner's check and the other's claim alike) from reordering them.
@pytest.mark.parametrize("lease", [3.0])
async def test_cut_off_from_redis_the_owner_stops_before_anyone_claims(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    await a.manager.admit(request())
    await a.body.next()
    await wait_for(lambda: a.failover.holding == 1)
    stopped_at: list[float] = []
    a.manager.on_job_end(lambda *_: stopped_at.append(asyncio.get_running_loop().time()))

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        from app.jobs.failover_store import FailoverStoreError

        raise FailoverStoreError("failover store unavailable: ConnectionError")

    a.failover._store._run = unreachable  # type: ignore[method-assign]  # noqa: SLF001
    taken = await b.body.next()
    claimed_at = asyncio.get_running_loop().time()
    assert stopped_at and stopped_at[0] < claimed_at  # stopped first, then claimed
    job = a.manager.get_job("J1")
    assert job is not None and job.state == "cancelled"
    assert job.reason is not None and job.reason.startswith("failover: registry unreachable")
    assert taken.spec.job_id == "J1"


async def test_a_room_gone_meanwhile_closes_the_job_with_its_reason(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    await a.manager.admit(request(room="short-lived"))
    await a.body.next()
    await wait_for(lambda: a.failover.holding == 1)
    b.failover._rooms.gone.add("short-lived")  # type: ignore[attr-defined]  # noqa: SLF001
    await lose(a)
    await wait_for(lambda: b.manager.get_job("J1") is not None)
    job = b.manager.get_job("J1")
    assert job is not None and job.state == "completed"
    assert job.reason == "room_gone_before_failover"
    assert [leg["replica"] for leg in job.legs] == ["a", "b"]
    assert b.body.started.empty()


async def test_drain_hands_running_calls_over(replicas: list[Replica]) -> None:
    a, b = replicas
    await a.manager.admit(request())
    run = await a.body.next()
    run.reporter.checkpoint({"v": 1, "conversation": {"turns": 5}})
    await wait_for(lambda: a.failover.holding == 1)
    await a.manager.drain(grace=0.1, before_cancel=a.failover.hand_over)
    job = a.manager.get_job("J1")
    assert job is not None and (job.state, job.reason) == ("cancelled", HANDED_OVER)
    taken = await b.body.next()  # within a scan, not a lease
    assert taken.spec.resume == {"v": 1, "conversation": {"turns": 5}}


async def test_a_full_replica_leaves_the_job_to_one_with_room(replicas: list[Replica]) -> None:
    a, b = replicas
    for i in range(2):  # b is full
        await b.manager.admit(request(f"B{i}", room=f"b-{i}"))
        await b.body.next()
    await a.manager.admit(request())
    await a.body.next()
    await wait_for(lambda: a.failover.holding == 1)
    await lose(a)
    await asyncio.sleep(3 * LEASE)
    assert b.body.started.empty()  # no slot: not claimed
    b.body.jobs["B0"].end.set_result("participant_left")
    taken = await b.body.next()
    assert taken.spec.job_id == "J1"
