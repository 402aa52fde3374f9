"""A replica the agent reports unable to serve (``health_problem``: a job receives audio and
decodes none) takes no new job; with ``restart_when_unhealthy`` off it drains and keeps running
(the server's exit is in test_service_e2e)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import ControlledBody, finish_and_wait, make_settings, notification

import app.jobs.health as health
from app.jobs.health import HealthWatch


class UnwellBody(ControlledBody):
    health_problem: str | None = None


async def test_an_unhealthy_replica_refuses_new_jobs_and_lets_running_ones_finish(
    make_app: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "INTERVAL", 0.02)
    body = UnwellBody()
    h = await make_app(make_settings(restart_when_unhealthy=False, drain_timeout=30), body)
    assert h.runtime.health is not None and h.runtime.request_exit is None  # no server here
    await h.send(notification(job_id="AJ_running"))
    assert (await h.client.get("/ready")).status_code == 200
    body.health_problem = "audio_not_decoded: job AJ_running receives audio and decodes none"
    async with asyncio.timeout(5):
        while (ready := await h.client.get("/ready")).status_code == 200:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert ready.json() == {"ready": False, "reason": body.health_problem}
    refused = await h.send(notification(job_id="AJ_next"))
    assert refused.status_code == 503 and "retry-after" in refused.headers
    assert "external_agent_unhealthy 1.0" in (await h.client.get("/metrics")).text
    await finish_and_wait(h.manager, body, "AJ_running")  # the running job ends its own way
    job = h.manager.get_job("AJ_running")
    assert job is not None and job.state == "completed"
    assert [s.job_id for s in body.specs] == ["AJ_running"]


async def test_the_watch_reports_the_first_problem_once_and_survives_a_broken_reading() -> None:
    readings: list[Any] = [None, RuntimeError("boom"), "first", "second"]
    seen: list[str] = []

    def problem() -> str | None:
        value = readings.pop(0) if readings else "later"
        if isinstance(value, Exception):
            raise value
        return value

    watch = HealthWatch(problem=problem, on_problem=seen.append, interval=0.005)
    await watch.start()
    async with asyncio.timeout(2):
        while not seen:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert seen == ["first"] and watch.seen == "first"
    await watch.aclose()
    await watch.aclose()
