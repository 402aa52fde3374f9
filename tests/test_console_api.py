"""The console's admin API: live events of a running job (long polling), the handoff queue,
the overview, the record download; and the live window itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import ADMIN, finish_and_wait, make_settings, notification

from agents.job import JobOutcome, JobReporter, JobSpec
from app.jobs.live import LiveLog

AUTH = {"Authorization": f"Bearer {ADMIN}"}


class TalkingBody:
    """A job body that reports the live events it is told to, then ends when told."""

    def __init__(self) -> None:
        self.reporters: dict[str, JobReporter] = {}
        self.running: dict[str, asyncio.Event] = {}
        self.done: dict[str, asyncio.Future[JobOutcome]] = {}

    async def __call__(self, spec: JobSpec, reporter: JobReporter) -> JobOutcome:
        reporter.state("connecting")
        reporter.state("running")
        self.reporters[spec.job_id] = reporter
        self.done[spec.job_id] = asyncio.get_running_loop().create_future()
        self.running.setdefault(spec.job_id, asyncio.Event()).set()
        return await self.done[spec.job_id]

    async def wait_running(self, job_id: str) -> JobReporter:
        async with asyncio.timeout(5):
            await self.running.setdefault(job_id, asyncio.Event()).wait()
        return self.reporters[job_id]


async def test_console_is_off_without_an_admin_token(make_app, body) -> None:
    h = await make_app(make_settings(admin_token=None), body)
    assert (await h.client.get("/console")).status_code == 404
    assert (await h.client.get("/console/api/overview")).status_code == 404


async def test_console_page_is_served_and_its_api_needs_the_bearer(make_app, body) -> None:
    h = await make_app(make_settings(), body)
    page = await h.client.get("/console")
    assert page.status_code == 200 and "Admin token" in page.text
    assert (await h.client.get("/web/console.js")).status_code == 200
    assert (await h.client.get("/console/api/overview")).status_code == 401
    assert (await h.client.get("/console/api/jobs/AJ_1/events")).status_code == 401


async def test_overview_shows_load_door_duration_and_scope(make_app, body) -> None:
    h = await make_app(make_settings(), body)
    await h.send(notification(job_id="AJ_1"))
    await body.wait_running("AJ_1")
    o = (await h.client.get("/console/api/overview", headers=AUTH)).json()
    assert o["active_jobs"] == 1 and o["max_jobs"] == 5 and o["scope"] == "this replica"
    assert o["registry"] == "memory" and o["handoffs"] == []
    (job,) = o["jobs"]
    assert job["source"] == "webhook" and job["room"] == "my-room" and job["state"] == "running"
    assert job["duration_s"] >= 0 and "eyJhbGc" not in json.dumps(o)


async def test_live_events_follow_a_running_job_by_long_polling(make_app) -> None:
    talking = TalkingBody()
    h = await make_app(make_settings(), talking)
    await h.send(notification(job_id="AJ_1"))
    reporter = await talking.wait_running("AJ_1")
    reporter.event("agent_status", {"status": "listening"})
    url = "/console/api/jobs/AJ_1/events"
    first = (await h.client.get(url, headers=AUTH)).json()
    assert [e["type"] for e in first["events"]] == ["agent_status"]
    assert first["next"] == 1 and first["closed"] is False and first["state"] == "running"

    waiting = asyncio.create_task(h.client.get(f"{url}?after=1&wait=5", headers=AUTH))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing new yet: the poll is held
    reporter.event("transcript_chunk", {"text": "My name is Ann", "is_final": True})
    page = (await asyncio.wait_for(waiting, 5)).json()
    assert [e["data"]["text"] for e in page["events"]] == ["My name is Ann"]
    assert page["next"] == 2

    empty = (await h.client.get(f"{url}?after=2&wait=0.05", headers=AUTH)).json()
    assert empty["events"] == [] and empty["next"] == 2

    waiting = asyncio.create_task(h.client.get(f"{url}?after=2&wait=5", headers=AUTH))
    await asyncio.sleep(0.05)
    talking.done["AJ_1"].set_result(JobOutcome(end_reason="participant_left"))
    page = (await asyncio.wait_for(waiting, 5)).json()
    assert page["closed"] is True and page["events"] == []
    assert page["state"] == "completed"


async def test_events_of_unknown_jobs_and_bad_queries(make_app, body) -> None:
    h = await make_app(make_settings(), body)
    assert (await h.client.get("/console/api/jobs/AJ_x/events", headers=AUTH)).status_code == 404
    await h.send(notification(job_id="AJ_1"))
    await body.wait_running("AJ_1")
    for query in ("after=-1", "wait=60", "after=x"):
        r = await h.client.get(f"/console/api/jobs/AJ_1/events?{query}", headers=AUTH)
        assert r.status_code == 422, query


async def test_handoffs_queue_until_an_operator_marks_them_handled(make_app) -> None:
    talking = TalkingBody()
    h = await make_app(make_settings(), talking)
    for job_id in ("AJ_1", "AJ_2"):
        await h.send(notification(job_id=job_id))
    for job_id, when in (("AJ_1", "2026-11-30T05:00:00.000Z"), ("AJ_2", "2026-11-30T05:01:00Z")):
        reporter = await talking.wait_running(job_id)
        reporter.event("handoff", {"reason": "asked for a person", "summary": f"call {job_id}",
                                   "timestamp": when})
    o = (await h.client.get("/console/api/overview", headers=AUTH)).json()
    assert [x["job_id"] for x in o["handoffs"]] == ["AJ_1", "AJ_2"]
    assert all(x["handled_at"] is None for x in o["handoffs"])
    r = await h.client.post("/console/api/jobs/AJ_1/handoff/handled", headers=AUTH)
    assert r.status_code == 200 and r.json()["handled_at"] > 0
    o = (await h.client.get("/console/api/overview", headers=AUTH)).json()
    assert [(x["job_id"], x["handled_at"] is None) for x in o["handoffs"]] == [
        ("AJ_2", True), ("AJ_1", False)]  # waiting first
    job = (await h.client.get("/jobs/AJ_1", headers=AUTH)).json()
    assert job["handoff"]["summary"] == "call AJ_1"
    for job_id in ("AJ_1", "AJ_2"):
        talking.done[job_id].set_result(JobOutcome(end_reason="handed_off"))


async def test_marking_a_job_without_handoff_is_a_conflict(make_app, body) -> None:
    h = await make_app(make_settings(), body)
    await h.send(notification(job_id="AJ_1"))
    await body.wait_running("AJ_1")
    r = await h.client.post("/console/api/jobs/AJ_1/handoff/handled", headers=AUTH)
    assert r.status_code == 409


async def test_record_download_is_an_attachment_once_the_job_ended(make_app, body) -> None:
    h = await make_app(make_settings(), body)
    await h.send(notification(job_id="AJ_1"))
    await body.wait_running("AJ_1")
    url = "/console/api/jobs/AJ_1/artifact"
    assert (await h.client.get(url, headers=AUTH)).status_code == 409
    await finish_and_wait(h.manager, body, "AJ_1", JobOutcome(end_reason="room_closed",
                                                               record={"transcript": []}))
    r = await h.client.get(url, headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="AJ_1.json"'
    data = r.json()
    assert data["job_id"] == "AJ_1" and data["reason"] == "room_closed"
    assert data["record"]["transcript"] == []


async def test_download_serves_the_artifact_file_only_from_the_artifacts_dir(
    make_app, body, tmp_path: Path
) -> None:
    artifacts = tmp_path / "jobs"
    artifacts.mkdir()
    written = artifacts / "AJ_1.json"
    written.write_text('{"from": "the file"}')
    outside = tmp_path / "secret.json"
    outside.write_text('{"from": "elsewhere"}')
    h = await make_app(make_settings(agent={"artifacts_dir": str(artifacts)}), body)
    for job_id, path in (("AJ_1", written), ("AJ_2", outside)):
        await h.send(notification(job_id=job_id))
        await body.wait_running(job_id)
        await finish_and_wait(h.manager, body, job_id,
                              JobOutcome(end_reason="done", record={"artifact": str(path)}))
    first = (await h.client.get("/console/api/jobs/AJ_1/artifact", headers=AUTH)).json()
    assert first == {"from": "the file"}
    second = (await h.client.get("/console/api/jobs/AJ_2/artifact", headers=AUTH)).json()
    assert second["job_id"] == "AJ_2"  # the kept record, never a file outside the directory


# --- the live window ----------------------------------------------------------------------


def test_live_log_keeps_a_window_and_says_what_fell_out() -> None:
    log = LiveLog(limit=3)
    for n in range(5):
        log.append("agent_status", {"n": n})
    page = log.after(0)
    assert [e.data["n"] for e in page.events] == [2, 3, 4] and page.missed == 2
    assert page.next_seq == 5
    assert log.after(3).missed == 0 and [e.seq for e in log.after(3).events] == [4, 5]
    assert log.after(5).events == [] and log.after(5).next_seq == 5


def test_live_log_takes_nothing_after_it_closed() -> None:
    log = LiveLog()
    log.append("a", {})
    log.close()
    log.append("b", {})
    assert [e.kind for e in log.after(0).events] == ["a"] and log.after(0).closed


async def test_live_log_wait_returns_on_an_event_on_close_or_at_the_deadline() -> None:
    log = LiveLog()
    started = asyncio.get_running_loop().time()
    page = await log.wait_after(0, wait=0.05)
    assert page.events == [] and asyncio.get_running_loop().time() - started >= 0.04
    waiters = [asyncio.create_task(log.wait_after(0, wait=5)) for _ in range(3)]
    await asyncio.sleep(0)
    log.append("x", {"v": 1})
    pages = await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert all([e.kind for e in p.events] == ["x"] for p in pages)
    waiter = asyncio.create_task(log.wait_after(1, wait=5))
    await asyncio.sleep(0)
    log.close()
    page = await asyncio.wait_for(waiter, 1)
    assert page.closed and page.events == []
