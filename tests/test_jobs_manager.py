"""The job manager: lifecycle states, ownership of tasks, reservations, drain, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest
from conftest import finish_and_wait, make_settings, notification, signed

from agents.job import JobFailed, JobOutcome
from app.admission import JobRequest
from app.jobs.manager import JobManager
from app.jobs.records import StoredAnswer
from app.jobs.registry import MemoryJobRegistry, RedisJobRegistry
from app.metrics import Metrics


def request(job_id: str = "AJ_1", **kw: Any) -> JobRequest:
    values: dict[str, Any] = {
        "source": "dispatch",
        "job_id": job_id,
        "dispatch_id": "AD_1",
        "job_type": "JT_ROOM",
        "room_name": "room-1",
        "access_token": "tok",
        "server_url": "wss://lk.example.com",
    }
    values.update(kw)
    return JobRequest(**values)


def manager(body: Any, *, registry: Any = None, **settings: Any) -> JobManager:
    s = make_settings(**settings)
    return JobManager(
        settings=s,
        job_body=body,
        registry=registry or MemoryJobRegistry(ttl=60, max_entries=1000),
        metrics=Metrics(),
    )


def job_tasks() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("job-")}


async def test_states_go_accepted_connecting_running_completed_with_record(body):
    m = manager(body)
    ends: list[tuple[str, str, str | None]] = []
    m.on_job_end(lambda *a: ends.append(a))
    assert (await m.admit(request())).verdict == "accepted"
    await body.wait_running("AJ_1")
    job = m.get_job("AJ_1")
    assert job is not None and job.state == "running" and job.detail == "in the room"
    outcome = JobOutcome(end_reason="participant_left", record={"turns": 3})
    await finish_and_wait(m, body, "AJ_1", outcome)
    assert job.state == "completed" and job.reason == "participant_left"
    assert job.record == {"seen": "AJ_1", "turns": 3}
    assert list(job.state_times) == ["accepted", "connecting", "running", "completed"]
    assert ends == [("AJ_1", "completed", "participant_left")]
    assert m.active_jobs == 0
    await m.aclose()


async def test_job_failed_keeps_reason_and_record(body):
    m = manager(body)
    await m.admit(request())
    await body.wait_running("AJ_1")
    await finish_and_wait(m, body, "AJ_1", JobFailed("room unreachable", record={"tries": 3}))
    job = m.get_job("AJ_1")
    assert job is not None
    assert (job.state, job.reason, job.record["tries"]) == ("failed", "room unreachable", 3)
    await m.aclose()


async def test_a_crashing_body_fails_the_job_and_not_the_service(body):
    m = manager(body)
    await m.admit(request())
    await body.wait_running("AJ_1")
    await finish_and_wait(m, body, "AJ_1", RuntimeError("boom"))
    job = m.get_job("AJ_1")
    assert job is not None and job.state == "failed"
    assert job.reason == "internal error: RuntimeError"
    assert (await m.admit(request("AJ_2"))).verdict == "accepted"
    await m.aclose()


async def test_a_body_returning_garbage_fails_the_job():
    async def bad(spec, reporter):
        return "done"

    m = manager(bad)
    ended = asyncio.Event()
    m.on_job_end(lambda *_: ended.set())
    await m.admit(request())
    await asyncio.wait_for(ended.wait(), 5)
    job = m.get_job("AJ_1")
    assert job is not None and job.state == "failed" and "JobOutcome" in (job.reason or "")
    await m.aclose()


async def test_reporter_never_raises_on_unserialisable_records():
    async def recorder(spec, reporter):
        reporter.record("obj", object())
        reporter.state("bogus")  # type: ignore[arg-type]
        return JobOutcome(end_reason="done")

    m = manager(recorder)
    ended = asyncio.Event()
    m.on_job_end(lambda *_: ended.set())
    await m.admit(request())
    await asyncio.wait_for(ended.wait(), 5)
    job = m.get_job("AJ_1")
    assert job is not None and job.state == "completed"
    assert isinstance(job.record["obj"], str)
    await m.aclose()


async def test_cancel_cancels_and_awaits_the_body(body):
    m = manager(body)
    await m.admit(request())
    await body.wait_running("AJ_1")
    assert await m.cancel("AJ_1", reason="cancelled by operator") is True
    job = m.get_job("AJ_1")
    assert job is not None and (job.state, job.reason) == ("cancelled", "cancelled by operator")
    assert body.cancelled == ["AJ_1"]
    assert job_tasks() == set()
    assert await m.cancel("AJ_1", reason="again") is False
    assert await m.cancel("AJ_unknown", reason="x") is False
    await m.aclose()


async def test_history_of_finished_jobs_is_bounded(body):
    m = manager(body, job_history=2, max_jobs=10)
    for i in range(4):
        await m.admit(request(f"AJ_{i}"))
        await body.wait_running(f"AJ_{i}")
        await finish_and_wait(m, body, f"AJ_{i}")
    assert [j.job_id for j in m.list_jobs()] == ["AJ_3", "AJ_2"]
    await m.aclose()


async def test_aclose_cancels_every_job_and_is_idempotent(body):
    m = manager(body, max_jobs=3)
    for i in range(3):
        await m.admit(request(f"AJ_{i}"))
        await body.wait_running(f"AJ_{i}")
    await m.aclose()
    await m.aclose()
    assert sorted(body.cancelled) == ["AJ_0", "AJ_1", "AJ_2"]
    assert all(j.reason == "service shutdown" for j in m.list_jobs())
    assert job_tasks() == set()
    assert (await m.admit(request("AJ_9"))).verdict == "busy"


async def test_drain_lets_short_jobs_finish_and_cancels_the_rest_at_the_deadline(body):
    m = manager(body, max_jobs=3)
    for job_id in ("AJ_short", "AJ_long"):
        await m.admit(request(job_id))
        await body.wait_running(job_id)
    drain = asyncio.create_task(m.drain(grace=0.5), name="test-drain")
    await asyncio.sleep(0)
    assert m.draining and (await m.admit(request("AJ_new"))).verdict == "busy"
    body.finish("AJ_short")
    await drain
    short, long = m.get_job("AJ_short"), m.get_job("AJ_long")
    assert short is not None and short.state == "completed"
    assert long is not None and (long.state, long.reason) == ("cancelled", "drain deadline")
    assert job_tasks() == set()
    await m.aclose()


async def test_reservation_holds_a_slot_then_starts_with_the_assignment(body):
    m = manager(body, max_jobs=1)
    r = await m.reserve(request(access_token=None, server_url=None), hold_seconds=30)
    assert r.verdict == "accepted" and r.participant_identity == "ai-agent-AJ_1"
    assert (await m.admit(request("AJ_2"))).verdict == "busy"
    assert (await m.reserve(request(), hold_seconds=30)).verdict == "duplicate"
    assert await m.start_reserved("AJ_1", access_token="assigned", server_url="wss://a") is True
    await body.wait_running("AJ_1")
    assert body.specs[0].access_token == "assigned" and body.specs[0].source == "dispatch"
    assert await m.start_reserved("AJ_1", access_token="x", server_url="wss://a") is False
    await m.aclose()


async def test_released_or_expired_reservations_free_the_slot_and_the_job_id(body):
    m = manager(body, max_jobs=1)
    await m.reserve(request(), hold_seconds=30)
    await m.release("AJ_1")
    assert m.used_slots == 0
    assert await m.start_reserved("AJ_1", access_token="t", server_url="wss://a") is False
    await m.reserve(request("AJ_2"), hold_seconds=0.05)
    (expiry,) = [t for t in asyncio.all_tasks() if t.get_name() == "reserve-AJ_2"]
    await asyncio.wait_for(expiry, 5)
    assert m.used_slots == 0
    assert (await m.admit(request("AJ_2"))).verdict == "accepted"
    await m.aclose()


async def test_one_hundred_simultaneous_duplicates_start_one_job(make_app, body):
    h = await make_app(make_settings(max_jobs=5), body)
    raw, headers = signed(notification())
    answers = await asyncio.gather(*(h.post(raw, headers) for _ in range(100)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.text for r in answers}) == 1 and answers[0].json()["accepted"] is True
    await body.wait_running("AJ_abc123")
    await asyncio.sleep(0.05)
    assert len(body.specs) == 1 and h.manager.active_jobs == 1


async def test_duplicates_in_flight_share_the_first_decision(body):
    class SlowRegistry(MemoryJobRegistry):
        async def claim(self, job_id: str, answer: StoredAnswer) -> StoredAnswer | None:
            await asyncio.sleep(0.01)
            return await super().claim(job_id, answer)

    m = manager(body, registry=SlowRegistry(ttl=60, max_entries=100), max_jobs=1)
    results = await asyncio.gather(*(m.admit(request()) for _ in range(100)))
    verdicts = sorted(r.verdict for r in results)
    assert verdicts == ["accepted"] + ["duplicate"] * 99
    await body.wait_running("AJ_1")
    assert len(body.specs) == 1
    await m.aclose()


async def test_capacity_is_never_exceeded_under_500_concurrent_offers(make_app, body):
    # Jobs never end here, so the number ever started is the peak number running.
    h = await make_app(make_settings(max_jobs=7), body)
    requests = [signed(notification(job_id=f"AJ_{i}")) for i in range(500)]
    answers = await asyncio.gather(*(h.post(raw, hd) for raw, hd in requests))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 7 and statuses.count(503) == 493
    assert all(r.headers.get("retry-after") == "5" for r in answers if r.status_code == 503)
    assert h.manager.active_jobs == 7
    for r in answers:
        if r.status_code == 200:
            await body.wait_running(r.json()["participant_identity"].removeprefix("ai-agent-"))
    assert len(body.specs) == 7 and len({s.job_id for s in body.specs}) == 7


async def test_two_managers_sharing_redis_agree_on_job_id(body):
    server = fakeredis.FakeServer()
    regs = [RedisJobRegistry(client=fakeredis.FakeAsyncRedis(server=server), ttl=60, settle=0)
            for _ in "ab"]
    a, b = (manager(body, registry=reg) for reg in regs)
    first, second = await asyncio.gather(a.admit(request()), b.admit(request()))
    assert sorted([first.verdict, second.verdict]) == ["accepted", "duplicate"]
    assert first.participant_identity == second.participant_identity
    await body.wait_running("AJ_1")
    assert len(body.specs) == 1
    await a.aclose()
    await b.aclose()


async def test_unreachable_redis_answers_busy_not_500(body):
    class Broken:
        async def set(self, *a: Any, **k: Any) -> Any:
            raise ConnectionError("down")

        async def get(self, *a: Any, **k: Any) -> Any:
            raise ConnectionError("down")

        async def aclose(self) -> None:
            return None

    m = manager(body, registry=RedisJobRegistry(client=Broken(), ttl=60))
    result = await m.admit(request())
    assert result.verdict == "busy" and "registry" in (result.error or "")
    assert body.specs == []
    await m.aclose()


@pytest.mark.parametrize("job_type", ["JT_PUBLISHER", "JT_PARTICIPANT"])
async def test_participant_jobs_from_any_door_need_a_participant(body, job_type):
    m = manager(body)
    result = await m.admit(request(job_type=job_type))
    assert result.verdict == "refused" and "participant" in (result.error or "")
    await m.aclose()


async def test_memory_registry_forgets_by_age_and_by_count(monkeypatch):
    import app.jobs.registry as registry_module

    clock = [1000.0]
    monkeypatch.setattr(registry_module.time, "monotonic", lambda: clock[0])
    reg = MemoryJobRegistry(ttl=10, max_entries=100)
    answer = StoredAnswer(participant_identity="a", participant_name="n", participant_metadata="m")
    assert await reg.claim("AJ_old", answer) is None
    assert await reg.claim("AJ_old", answer) == answer
    clock[0] += 11
    assert await reg.get("AJ_old") is None  # too old: a new offer may claim it again
    assert await reg.claim("AJ_old", answer) is None
    for i in range(150):
        await reg.claim(f"AJ_{i}", answer)
    assert len(reg) == 100 and await reg.get("AJ_149") == answer and await reg.get("AJ_0") is None
