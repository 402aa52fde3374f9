"""The agent worker against a protocol-level LiveKit agent server: registration, availability,
assignment, termination, status and load, pings. Assertions are on the protobufs received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from agent_protocol_server import AgentProtocolServer, Received, make_job
from dispatch_fakes import FakeJobManager, eventually
from livekit.protocol import agent as pb

from app.dispatch.config import WorkerSettings
from app.dispatch.worker import AgentWorker

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
WorkerFactory = Callable[..., Awaitable[AgentWorker]]


@pytest.fixture
async def server() -> AsyncIterator[AgentProtocolServer]:
    srv = AgentProtocolServer(api_key="devkey", api_secret=SECRET)
    await srv.start()
    yield srv
    await srv.aclose()


@pytest.fixture
def manager() -> FakeJobManager:
    return FakeJobManager(capacity=2)


@pytest.fixture
async def make_worker(
    server: AgentProtocolServer, manager: FakeJobManager
) -> AsyncIterator[WorkerFactory]:
    workers: list[AgentWorker] = []

    async def factory(secret: str = SECRET, **overrides: Any) -> AgentWorker:
        opts: dict[str, Any] = {
            "reconnect_initial_delay": 0.02,
            "reconnect_max_delay": 0.1,
            "ping_interval": 30.0,
            "ping_timeout": 60.0,
            "status_interval": 60.0,
            "connect_timeout": 2.0,
        }
        opts.update(overrides)
        worker = AgentWorker(
            manager=manager,
            settings=WorkerSettings(**opts),
            livekit_url=server.url,
            api_key="devkey",
            api_secret=secret,
        )
        workers.append(worker)
        await worker.start()
        return worker

    yield factory
    for w in workers:
        await w.aclose()
    leaked = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("dispatch-")]
    assert leaked == []


def kind_is(kind: str, job_id: str | None = None) -> Callable[[Received], bool]:
    def pred(r: Received) -> bool:
        if r.kind != kind:
            return False
        if job_id is None:
            return True
        inner = getattr(r.msg, kind)
        return bool(inner.job_id == job_id)

    return pred


async def registered(worker: AgentWorker) -> str:
    async with asyncio.timeout(5):
        return await worker.wait_registered()


async def run_job(server: AgentProtocolServer, job: pb.Job, token: str = "tok") -> None:
    resp = await server.request_availability(job)
    assert resp.available
    start = len(server.received)
    await server.assign(job, token=token)
    await server.wait_for(kind_is("update_job", job.id), after=start)


async def test_registers_as_named_room_worker_with_agent_grant(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    worker = await make_worker(agent_name="support-bot")
    assert await registered(worker) == "AW_test1"
    first = server.received[0]
    assert first.kind == "register"
    reg = first.msg.register
    assert reg.agent_name == "support-bot"
    assert reg.type == pb.JT_ROOM
    assert reg.allowed_permissions.agent
    assert reg.allowed_permissions.can_publish and reg.allowed_permissions.can_subscribe
    assert server.auth_failures == 0
    status = await server.wait_for(kind_is("update_worker"))
    assert status.msg.update_worker.status == pb.WS_AVAILABLE
    assert status.msg.update_worker.job_count == 0


async def test_publisher_worker_type_and_permissions_are_sent(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    worker = await make_worker(
        worker_type="publisher", permissions={"hidden": True, "can_publish": False}
    )
    await registered(worker)
    reg = server.received[0].msg.register
    assert reg.type == pb.JT_PUBLISHER
    assert reg.allowed_permissions.hidden
    assert not reg.allowed_permissions.can_publish


async def test_wrong_secret_is_refused_retried_then_given_up(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    worker = await make_worker(
        secret="not-the-secret-but-long-enough-for-hs256", reconnect_max_attempts=3
    )
    await eventually(lambda: not worker.running)
    assert server.auth_failures == 3
    assert server.connections == 0
    assert worker.failure is not None and "401" in worker.failure.message


async def test_refused_handshakes_are_retried_until_registered(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    server.refuse_next = 2
    worker = await make_worker()
    await registered(worker)
    assert server.refuse_next == 0
    assert server.connections == 1


async def test_availability_accepted_reserves_and_answers_participant(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    job = make_job("AJ_1", room="sales", job_type=pb.JT_PUBLISHER, participant="alice")
    job.metadata = '{"voice": "x"}'
    resp = await server.request_availability(job)
    assert resp.available
    assert resp.participant_identity == "ai-agent-AJ_1"
    assert resp.participant_name == "AI Assistant"
    assert resp.participant_metadata == '{"type":"ai"}'
    req = manager.reservations["AJ_1"]
    assert req.source == "dispatch"
    assert (req.job_type, req.room_name, req.room_sid) == ("JT_PUBLISHER", "sales", "RM_sales")
    assert req.participant_identity == "alice"
    assert req.dispatch_id == "AD_AJ_1"
    assert req.metadata == '{"voice": "x"}'
    assert req.access_token is None


async def test_availability_rejected_when_full_draining_disabled_or_invalid(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    manager.enabled_types = {"JT_ROOM"}
    refused = await server.request_availability(
        make_job("AJ_p", job_type=pb.JT_PARTICIPANT, participant="bob")
    )
    assert not refused.available and refused.participant_identity == ""

    invalid = await server.request_availability(make_job("AJ_x", job_type=pb.JT_PUBLISHER))
    assert not invalid.available

    manager.is_draining = True
    assert not (await server.request_availability(make_job("AJ_d"))).available
    manager.is_draining = False

    manager.capacity = 0
    assert not (await server.request_availability(make_job("AJ_f"))).available
    assert manager.reservations == {}
    # The invalid job never reached admission.
    assert [r.job_id for r in manager.requests] == ["AJ_p", "AJ_d", "AJ_f"]


async def test_assignment_starts_the_reserved_job_with_token_and_configured_url(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    job = make_job("AJ_1")
    await run_job(server, job, token="room-token")
    assert manager.starts == ["AJ_1"]
    started = manager.jobs["AJ_1"]
    assert started.access_token == "room-token"
    assert started.server_url == server.url  # the assignment's url was empty
    running = server.of_kind("update_job")[-1].msg.update_job
    assert (running.job_id, running.status) == ("AJ_1", pb.JS_RUNNING)

    job2 = make_job("AJ_2")
    assert (await server.request_availability(job2)).available
    await server.assign(job2, token="t2", url="wss://elsewhere.example")
    await server.wait_for(kind_is("update_job", "AJ_2"))
    assert manager.jobs["AJ_2"].server_url == "wss://elsewhere.example"


async def test_job_ends_are_reported_with_success_or_failure_reason(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    await run_job(server, make_job("AJ_ok"))
    await run_job(server, make_job("AJ_bad"))
    start = len(server.received)
    manager.finish("AJ_ok", "completed", "participant_left")
    manager.finish("AJ_bad", "failed", "room join failed: 401")
    ok = await server.wait_for(kind_is("update_job", "AJ_ok"), after=start)
    bad = await server.wait_for(kind_is("update_job", "AJ_bad"), after=start)
    assert ok.msg.update_job.status == pb.JS_SUCCESS
    assert bad.msg.update_job.status == pb.JS_FAILED
    assert bad.msg.update_job.error == "room join failed: 401"
    assert worker_jobs_empty(manager)


def worker_jobs_empty(manager: FakeJobManager) -> bool:
    return all(j.state != "running" for j in manager.jobs.values())


async def test_termination_cancels_the_job_and_reports_its_end(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    worker = await make_worker()
    await registered(worker)
    await run_job(server, make_job("AJ_1"))
    start = len(server.received)
    await server.terminate("AJ_1")
    end = await server.wait_for(kind_is("update_job", "AJ_1"), after=start)
    assert end.msg.update_job.status == pb.JS_SUCCESS
    assert manager.cancels and manager.cancels[0][0] == "AJ_1"
    assert manager.jobs["AJ_1"].state == "cancelled"
    assert worker.dispatched_jobs == frozenset()


async def test_termination_of_a_reserved_job_releases_the_slot(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    assert (await server.request_availability(make_job("AJ_1"))).available
    await server.terminate("AJ_1")
    await eventually(lambda: "AJ_1" in manager.released)
    assert manager.reservations == {}


async def test_assignment_after_the_reservation_expired_goes_through_admission(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    job = make_job("AJ_1")
    assert (await server.request_availability(job)).available
    manager.expire("AJ_1")
    manager.answers.clear()  # forgotten: admission decides afresh
    await server.assign(job, token="tok", url="")
    upd = await server.wait_for(kind_is("update_job", "AJ_1"))
    assert upd.msg.update_job.status == pb.JS_RUNNING
    assert manager.jobs["AJ_1"].request.access_token == "tok"
    assert manager.jobs["AJ_1"].request.source == "dispatch"


async def test_assignment_refused_by_admission_is_reported_failed(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    manager.capacity = 0
    await server.assign(make_job("AJ_1"), token="tok")
    upd = await server.wait_for(kind_is("update_job", "AJ_1"))
    assert upd.msg.update_job.status == pb.JS_FAILED
    assert "at capacity" in upd.msg.update_job.error
    assert manager.starts == []


async def test_duplicate_assignment_does_not_start_a_second_job(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    job = make_job("AJ_1")
    await run_job(server, job)
    again = await server.request_availability(job)
    assert again.available and again.participant_identity == "ai-agent-AJ_1"
    await server.assign(job, token="tok")
    # A later message proves the duplicate was processed before it.
    await server.request_availability(make_job("AJ_2"))
    assert manager.starts == ["AJ_1"]


async def test_status_reports_load_job_count_full_and_draining(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    worker = await make_worker()
    await registered(worker)
    manager.capacity = 2
    await run_job(server, make_job("AJ_1"))
    half = await server.wait_for(
        lambda r: r.kind == "update_worker" and r.msg.update_worker.job_count == 1
    )
    assert half.msg.update_worker.status == pb.WS_AVAILABLE
    assert half.msg.update_worker.load == pytest.approx(0.5 * 0.7)  # scaled to target_load

    await run_job(server, make_job("AJ_2"))
    full = await server.wait_for(
        lambda r: r.kind == "update_worker" and r.msg.update_worker.job_count == 2
    )
    assert full.msg.update_worker.status == pb.WS_FULL
    assert full.msg.update_worker.load == pytest.approx(1.0)

    manager.finish("AJ_1", "completed")
    manager.finish("AJ_2", "completed")
    manager.is_draining = True
    start = len(server.received)
    worker.status_changed()
    drain = await server.wait_for(
        lambda r: r.kind == "update_worker" and r.msg.update_worker.draining, after=start
    )
    assert drain.msg.update_worker.status == pb.WS_FULL
    assert drain.msg.update_worker.job_count == 0


async def test_status_is_sent_on_the_interval(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker(status_interval=0.05))
    await server.wait_for(lambda _: len(server.of_kind("update_worker")) >= 3)


async def test_pings_carry_timestamps_and_a_silent_server_causes_a_reconnect(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    worker = await make_worker(ping_interval=0.05, ping_timeout=0.3)
    await registered(worker)
    ping = await server.wait_for(kind_is("ping"))
    assert ping.msg.ping.timestamp > 1_600_000_000_000  # unix milliseconds
    server.answer_pings = False
    await server.wait_connections(2)
    assert server.received[-1].conn == 2 or any(r.conn == 2 for r in server.received)


async def test_garbage_from_the_server_is_ignored(
    server: AgentProtocolServer, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    assert server._conn is not None
    await server._conn.ws.send_bytes(b"\xff\xff\xff not a protobuf")
    await server._conn.ws.send_str("text frame")
    assert (await server.request_availability(make_job("AJ_1"))).available
    assert server.connections == 1


async def test_aclose_is_idempotent_and_releases_reservations(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    worker = await make_worker()
    await registered(worker)
    assert (await server.request_availability(make_job("AJ_1"))).available
    await worker.aclose()
    await worker.aclose()
    assert manager.released == ["AJ_1"]
    assert not worker.running
    with pytest.raises(RuntimeError):
        await worker.start()


async def test_status_follows_manager_changes_without_being_told(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())  # status_interval is 60 s here
    await server.wait_for(kind_is("update_worker"))
    start = len(server.received)
    manager.is_draining = True  # e.g. SIGTERM: the manager drains, nobody tells the worker
    drain = await server.wait_for(
        lambda r: r.kind == "update_worker" and r.msg.update_worker.draining, after=start
    )
    assert drain.msg.update_worker.status == pb.WS_FULL


async def test_availability_for_a_job_that_already_ran_here_is_declined(
    server: AgentProtocolServer, manager: FakeJobManager, make_worker: WorkerFactory
) -> None:
    await registered(await make_worker())
    job = make_job("AJ_1")
    await run_job(server, job)
    manager.finish("AJ_1", "failed", "boom")
    again = await server.request_availability(job)
    assert not again.available
    assert manager.starts == ["AJ_1"]
