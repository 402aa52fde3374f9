"""The jobs admin API: off without a token, bearer-protected, list / get / cancel."""

from __future__ import annotations

from conftest import ADMIN, finish_and_wait, make_settings, notification

from agents.job import JobOutcome

AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_jobs_api_is_off_without_an_admin_token(make_app, body):
    h = await make_app(make_settings(admin_token=None), body)
    assert (await h.client.get("/jobs", headers=AUTH)).status_code == 404
    assert (await h.client.delete("/jobs/AJ_1", headers=AUTH)).status_code == 404


async def test_jobs_api_needs_the_bearer_token(make_app, body):
    h = await make_app(make_settings(), body)
    assert (await h.client.get("/jobs")).status_code == 401
    bad = {"Authorization": "Bearer not-the-token-0123456789"}
    r = await h.client.get("/jobs", headers=bad)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_list_and_get_show_state_reason_and_record_without_tokens(make_app, body):
    h = await make_app(make_settings(), body)
    await h.send(notification(job_id="AJ_1"))
    await h.send(notification(job_id="AJ_2"))
    await body.wait_running("AJ_1")
    await body.wait_running("AJ_2")
    await finish_and_wait(h.manager, body, "AJ_1", JobOutcome(end_reason="room_closed"))
    listing = (await h.client.get("/jobs", headers=AUTH)).json()
    assert listing["active_jobs"] == 1
    states = {j["job_id"]: (j["state"], j["reason"]) for j in listing["jobs"]}
    assert states == {"AJ_1": ("completed", "room_closed"), "AJ_2": ("running", None)}
    job = (await h.client.get("/jobs/AJ_1", headers=AUTH)).json()
    assert job["record"] == {"seen": "AJ_1"} and job["room"] == "my-room"
    assert set(job["state_times"]) == {"accepted", "connecting", "running", "completed"}
    assert "eyJhbGc" not in str(listing) + str(job)
    assert (await h.client.get("/jobs/AJ_nope", headers=AUTH)).status_code == 404


async def test_delete_cancels_a_running_job_and_refuses_finished_ones(make_app, body):
    h = await make_app(make_settings(), body)
    await h.send(notification(job_id="AJ_1"))
    await body.wait_running("AJ_1")
    r = await h.client.delete("/jobs/AJ_1", headers=AUTH)
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    assert body.cancelled == ["AJ_1"]
    job = (await h.client.get("/jobs/AJ_1", headers=AUTH)).json()
    assert job["reason"] == "cancelled by operator"
    assert (await h.client.delete("/jobs/AJ_1", headers=AUTH)).status_code == 409
    assert (await h.client.delete("/jobs/AJ_nope", headers=AUTH)).status_code == 404


async def test_health_and_ready_report_jobs_and_drain(make_app, body):
    h = await make_app(make_settings(), body)
    await h.send(notification())
    health = (await h.client.get("/health")).json()
    assert health["status"] == "ok" and health["active_jobs"] == 1 and health["uptime"] >= 0
    assert (await h.client.get("/ready")).status_code == 200
    h.manager.start_draining()
    assert (await h.client.get("/ready")).json() == {"ready": False, "reason": "draining"}
    assert (await h.client.get("/health")).json()["status"] == "draining"
