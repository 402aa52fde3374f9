"""A dropped worker connection mid-job: jobs keep running, the worker reconnects with backoff and
re-registers, reports the ends it missed, and neither loses nor duplicates a job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from agent_protocol_server import AgentProtocolServer, make_job
from dispatch_fakes import FakeJobManager, eventually
from livekit.protocol import agent as pb

from app.dispatch.config import WorkerSettings
from app.dispatch.worker import AgentWorker, backoff_delay

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
async def server() -> AsyncIterator[AgentProtocolServer]:
    srv = AgentProtocolServer(api_key="devkey", api_secret=SECRET)
    await srv.start()
    yield srv
    await srv.aclose()


@pytest.fixture
async def worker(server: AgentProtocolServer) -> AsyncIterator[tuple[AgentWorker, FakeJobManager]]:
    manager = FakeJobManager(capacity=4)
    w = AgentWorker(
        manager=manager,
        settings=WorkerSettings(
            reconnect_initial_delay=0.02,
            reconnect_max_delay=0.1,
            status_interval=60,
            ping_interval=30,
            ping_timeout=60,
        ),
        livekit_url=server.url.replace("http://", "ws://"),
        api_key="devkey",
        api_secret=SECRET,
    )
    await w.start()
    async with asyncio.timeout(5):
        await w.wait_registered()
    yield w, manager
    await w.aclose()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("dispatch-")]


async def start_job(server: AgentProtocolServer, job_id: str) -> pb.Job:
    job = make_job(job_id)
    assert (await server.request_availability(job)).available
    n = len(server.received)
    await server.assign(job, token=f"tok-{job_id}")
    await server.wait_for(
        lambda r: r.kind == "update_job" and r.msg.update_job.job_id == job_id, after=n
    )
    return job


async def disconnected(w: AgentWorker) -> None:
    await eventually(lambda: w.worker_id is None)


async def test_drop_mid_job_keeps_jobs_and_reports_missed_ends_after_reregistering(
    server: AgentProtocolServer, worker: tuple[AgentWorker, FakeJobManager]
) -> None:
    w, manager = worker
    await start_job(server, "AJ_1")
    job2 = await start_job(server, "AJ_2")

    server.refuse_next = 2  # the first reconnects fail: backoff, then success
    await server.drop()
    await disconnected(w)
    manager.finish("AJ_1", "failed", "llm unavailable")  # ends while disconnected

    await server.wait_connections(2)
    assert await w.wait_registered() == "AW_test2"
    on_second = [r for r in server.received if r.conn == 2]
    assert on_second[0].kind == "register"
    missed = await server.wait_for(
        lambda r: r.conn == 2 and r.kind == "update_job" and r.msg.update_job.job_id == "AJ_1"
    )
    assert missed.msg.update_job.status == pb.JS_FAILED
    assert missed.msg.update_job.error == "llm unavailable"
    # Reported once, on the connection that could carry it.
    ends = [
        r
        for r in server.of_kind("update_job")
        if r.msg.update_job.job_id == "AJ_1" and r.msg.update_job.status == pb.JS_FAILED
    ]
    assert len(ends) == 1

    # AJ_2 kept running through the drop; the server resuming it gets the same answer and
    # its re-assignment starts nothing new.
    assert manager.jobs["AJ_2"].state == "running"
    resumed = await server.request_availability(job2, resuming=True)
    assert resumed.available and resumed.participant_identity == "ai-agent-AJ_2"
    await server.assign(job2, token="tok-again")
    await server.request_availability(make_job("AJ_3"))  # ordered after the assignment
    assert manager.starts == ["AJ_1", "AJ_2"]
    assert manager.jobs["AJ_2"].access_token == "tok-AJ_2"

    status = await server.wait_for(lambda r: r.conn == 2 and r.kind == "update_worker")
    assert status.msg.update_worker.job_count == 1  # AJ_2 only

    n = len(server.received)
    manager.finish("AJ_2", "completed", "participant_left")
    end2 = await server.wait_for(
        lambda r: r.kind == "update_job" and r.msg.update_job.job_id == "AJ_2", after=n
    )
    assert (end2.conn, end2.msg.update_job.status) == (2, pb.JS_SUCCESS)


async def test_several_drops_never_duplicate_or_lose_a_job(
    server: AgentProtocolServer, worker: tuple[AgentWorker, FakeJobManager]
) -> None:
    w, manager = worker
    await start_job(server, "AJ_1")
    for i in range(3):
        await server.drop()
        await disconnected(w)
        await server.wait_connections(i + 2)
        await w.wait_registered()
    assert manager.starts == ["AJ_1"]
    assert w.dispatched_jobs == frozenset({"AJ_1"})
    manager.finish("AJ_1", "completed")
    end = await server.wait_for(
        lambda r: r.kind == "update_job" and r.msg.update_job.status == pb.JS_SUCCESS
    )
    assert end.conn == 4


async def test_reservation_is_released_when_its_answer_cannot_be_sent(
    server: AgentProtocolServer, worker: tuple[AgentWorker, FakeJobManager]
) -> None:
    w, manager = worker
    manager.reserve_gate = asyncio.Event()
    n = len(server.received)
    await server.send(pb.ServerMessage(availability=pb.AvailabilityRequest(job=make_job("AJ_1"))))
    await eventually(
        lambda: not ("AJ_1" not in manager.reservations)
    )  # reserved, answer not sent yet
    server.refuse_next = 1000  # stay disconnected
    await server.drop()
    await disconnected(w)
    manager.reserve_gate.set()
    await eventually(lambda: "AJ_1" in manager.released)
    assert manager.reservations == {}
    assert not [r for r in server.received[n:] if r.kind == "availability"]


def test_backoff_grows_exponentially_and_is_capped() -> None:
    delays = [backoff_delay(a, initial=0.5, cap=8.0, jitter=0.0) for a in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for attempt in (1, 5, 50):
        d = backoff_delay(attempt, initial=0.5, cap=8.0)
        nominal = backoff_delay(attempt, initial=0.5, cap=8.0, jitter=0.0)
        assert nominal / 2 <= d <= nominal


async def test_go_away_makes_the_worker_reconnect_keeping_its_jobs(
    server: AgentProtocolServer, worker: tuple[AgentWorker, FakeJobManager]
) -> None:
    w, manager = worker
    await start_job(server, "AJ_1")
    await server.send(pb.ServerMessage(go_away=pb.AgentHttp.GoAway(reason="node draining")))
    await server.wait_connections(2)
    assert await w.wait_registered() == "AW_test2"
    assert w.dispatched_jobs == frozenset({"AJ_1"}) and manager.starts == ["AJ_1"]


async def test_a_server_that_never_answers_pings_is_not_dropped(
    server: AgentProtocolServer,
) -> None:
    server.answer_pings = False
    manager = FakeJobManager()
    w = AgentWorker(
        manager=manager,
        settings=WorkerSettings(ping_interval=0.02, ping_timeout=0.05, status_interval=60),
        livekit_url=server.url,
        api_key="devkey",
        api_secret=SECRET,
    )
    await w.start()
    try:
        await server.wait_for(lambda _: len(server.of_kind("ping")) >= 10)
        assert server.connections == 1
        assert {r.conn for r in server.of_kind("ping")} == {1}
    finally:
        await w.aclose()


async def test_an_unexpected_error_reconnects_instead_of_ending_dispatch(
    server: AgentProtocolServer,
) -> None:
    class Flaky(FakeJobManager):
        explode = 1

        @property
        def active_jobs(self) -> int:
            if self.explode:
                self.explode -= 1
                raise RuntimeError("bug")
            return 0

    w = AgentWorker(
        manager=Flaky(),
        settings=WorkerSettings(reconnect_initial_delay=0.02, reconnect_max_delay=0.1),
        livekit_url=server.url,
        api_key="devkey",
        api_secret=SECRET,
    )
    await w.start()
    try:
        await server.wait_connections(2)
        assert await w.wait_registered() == "AW_test2"
        assert w.running
    finally:
        await w.aclose()
