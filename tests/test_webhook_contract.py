"""Every row of PROTOCOL.md §1's table, through the real app (ASGI, lifespan running)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from conftest import (
    API_KEY,
    API_SECRET,
    OLD_SECRET,
    SECRET,
    ControlledBody,
    finish_and_wait,
    make_settings,
    notification,
    signed,
)
from livekit import api


def assert_refused(response: Any, status: int, fragment: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    assert data["accepted"] is False
    assert fragment.lower() in data["error"].lower()
    return data


async def test_valid_notification_is_accepted_with_the_agent_identity(make_app, body):
    h = await make_app(make_settings(), body)
    r = await h.send(notification())
    assert r.status_code == 200
    assert r.json() == {
        "accepted": True,
        "participant_identity": "ai-agent-AJ_abc123",
        "participant_name": "AI Assistant",
        "participant_metadata": '{"type":"ai"}',
    }
    await body.wait_running("AJ_abc123")
    spec = body.specs[0]
    assert (spec.room_name, spec.access_token, spec.agent_identity) == (
        "my-room",
        "eyJhbGc.test.token",
        "ai-agent-AJ_abc123",
    )
    assert spec.source == "webhook" and spec.metadata == "custom-data"


async def test_answer_is_sent_while_the_job_is_still_dialling_the_room(make_app):
    dialling = asyncio.Event()

    async def never_connects(spec, reporter):
        reporter.state("connecting")
        dialling.set()
        await asyncio.Event().wait()  # the room never answers

    h = await make_app(make_settings(), never_connects)
    r = await asyncio.wait_for(h.send(notification()), 5)  # must not wait for the room
    assert r.json()["accepted"] is True
    await asyncio.wait_for(dialling.wait(), 5)
    job = h.manager.get_job("AJ_abc123")
    assert job is not None and job.state == "connecting"


async def test_oversized_body_is_413_and_spawns_nothing(make_app, body):
    h = await make_app(make_settings(), body)
    big = notification(metadata="x" * (70 * 1024))
    assert_refused(await h.send(big), 413, "too large")
    assert h.manager.active_jobs == 0


async def test_oversized_streamed_body_without_length_is_413(make_app, body):
    h = await make_app(make_settings(), body)
    raw, headers = signed(notification(metadata="x" * (70 * 1024)))

    async def chunks():
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    r = await h.client.post("/livekit/agent", content=chunks(), headers=headers)
    assert_refused(r, 413)
    assert h.manager.active_jobs == 0


async def test_missing_signature_is_401(make_app, body):
    h = await make_app(make_settings(), body)
    raw = json.dumps(notification()).encode()
    r = await h.post(raw, {"content-type": "application/json"})
    assert_refused(r, 401, "signature")


async def test_tampered_body_is_401(make_app, body):
    h = await make_app(make_settings(), body)
    raw, headers = signed(notification())
    tampered = raw.replace(b"my-room", b"my-roon")
    assert_refused(await h.post(tampered, headers), 401, "invalid signature")
    assert body.specs == []


async def test_wrong_secret_is_401(make_app, body):
    h = await make_app(make_settings(), body)
    assert_refused(await h.send(notification(), secret="some-other-secret-0123456789"), 401)


async def test_sha256_prefixed_signature_is_accepted(make_app, body):
    h = await make_app(make_settings(), body)
    raw, headers = signed(notification())
    headers["X-LiveKit-Signature"] = "sha256=" + headers["X-LiveKit-Signature"]
    assert (await h.post(raw, headers)).json()["accepted"] is True


async def test_rotation_accepts_either_of_two_secrets(make_app, body):
    h = await make_app(make_settings(webhook_secrets=[SECRET, OLD_SECRET]), body)
    r1 = await h.send(notification(job_id="AJ_new"), secret=SECRET)
    r2 = await h.send(notification(job_id="AJ_old"), secret=OLD_SECRET)
    assert r1.json()["accepted"] and r2.json()["accepted"]
    assert_refused(await h.send(notification(job_id="AJ_x"), secret="x" * 32), 401)


@pytest.mark.parametrize("offset", [-301, 301, -86400, 86400])
async def test_old_or_future_header_timestamp_is_stale(make_app, body, offset):
    h = await make_app(make_settings(), body)
    r = await h.send(notification(), timestamp=int(time.time()) + offset)
    assert_refused(r, 401, "stale timestamp")


@pytest.mark.parametrize("offset", [-301, 301])
async def test_body_timestamp_out_of_tolerance_is_stale(make_app, body, offset):
    h = await make_app(make_settings(), body)
    r = await h.send(notification(timestamp=int(time.time()) + offset))
    assert_refused(r, 401, "stale timestamp")


async def test_header_and_body_timestamps_disagreeing_is_stale(make_app, body):
    h = await make_app(make_settings(), body)
    now = int(time.time())
    r = await h.send(notification(timestamp=now - 3600), timestamp=now)
    assert_refused(r, 401, "stale timestamp")
    r = await h.send(notification(timestamp=now), timestamp=now - 3600)
    assert_refused(r, 401, "stale timestamp")


async def test_standard_webhooks_signature_is_accepted(make_app, body):
    h = await make_app(make_settings(), body)
    r = await h.send(notification(), scheme="standard")
    assert r.json()["accepted"] is True


async def test_standard_webhooks_signs_the_timestamp(make_app, body):
    h = await make_app(make_settings(), body)
    raw, headers = signed(notification(), scheme="standard")
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    assert_refused(await h.post(raw, headers), 401, "invalid signature")
    raw, headers = signed(notification(), scheme="standard")
    assert_refused(await h.post(raw.replace(b"AJ_", b"AK_"), headers), 401)


async def test_standard_webhooks_with_stale_timestamp_is_401(make_app, body):
    h = await make_app(make_settings(), body)
    r = await h.send(notification(), scheme="standard", timestamp=int(time.time()) - 1000)
    assert_refused(r, 401, "stale")


async def test_malformed_json_is_400(make_app, body):
    h = await make_app(make_settings(), body)
    assert_refused(await h.send(b'{"job_id": "AJ_1",'), 400, "json")
    assert_refused(await h.send(b"\xff\xfe not utf8"), 400, "json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_id": 123}, "job_id"),
        ({"job_type": "JT_NOPE"}, "job_type"),
        ({"room": {"sid": "RM_1"}}, "room"),
        ({"room": "my-room"}, "room"),
        ({"timestamp": "soon"}, "timestamp"),
        ({"metadata": {"a": 1}}, "metadata"),
        ({"server_url": "not a url"}, "server_url"),
        ({"job_id": ""}, "job_id"),
    ],
)
async def test_wrong_types_are_422_with_field_errors(make_app, body, change, field):
    h = await make_app(make_settings(), body)
    data = assert_refused(await h.send(notification(**change)), 422)
    assert any(e["loc"] and e["loc"][0] == field for e in data["errors"]), data
    assert "eyJhbGc" not in json.dumps(data)  # inputs are never echoed
    assert h.manager.active_jobs == 0


async def test_json_that_is_not_an_object_is_422(make_app, body):
    h = await make_app(make_settings(), body)
    assert_refused(await h.send(b"[1, 2, 3]"), 422)


@pytest.mark.parametrize("job_type", ["JT_PUBLISHER", "JT_PARTICIPANT"])
async def test_participant_jobs_without_participant_are_422(make_app, body, job_type):
    h = await make_app(make_settings(), body)
    data = assert_refused(await h.send(notification(job_type=job_type)), 422)
    assert "participant" in json.dumps(data["errors"])


async def test_publisher_job_targets_its_participant(make_app, body):
    h = await make_app(make_settings(), body)
    n = notification(job_type="JT_PUBLISHER", participant={"sid": "PA_1", "identity": "user123"})
    assert (await h.send(n)).json()["accepted"] is True
    await body.wait_running("AJ_abc123")
    assert body.specs[0].participant_identity == "user123"


async def test_unknown_fields_are_ignored_and_creation_time_is_read(make_app, body):
    h = await make_app(make_settings(), body)
    n = notification(room={"sid": "RM_1", "name": "r", "creation_time": "1700000000"}, extra=1)
    assert (await h.send(n)).json()["accepted"] is True


async def test_disabled_job_type_is_refused_with_200(make_app, body):
    h = await make_app(make_settings(job_types=["JT_ROOM"]), body)
    n = notification(job_type="JT_PUBLISHER", participant={"identity": "u"})
    assert_refused(await h.send(n), 200, "not enabled")
    assert h.manager.active_jobs == 0


async def test_disabled_agent_is_refused_with_200(make_app, body):
    h = await make_app(make_settings(enabled=False), body)
    assert_refused(await h.send(notification()), 200, "disabled")


async def test_retry_gets_the_first_answer_and_no_second_participant(make_app, body):
    h = await make_app(make_settings(), body)
    first = await h.send(notification())
    again = await h.send(notification(metadata="different"))
    assert first.json() == again.json()
    await body.wait_running("AJ_abc123")
    await asyncio.sleep(0)
    assert len(body.specs) == 1


async def test_retry_of_a_finished_job_is_still_a_duplicate(make_app, body):
    h = await make_app(make_settings(), body)
    first = await h.send(notification())
    await body.wait_running("AJ_abc123")
    await finish_and_wait(h.manager, body, "AJ_abc123")
    assert (await h.send(notification())).json() == first.json()
    assert len(body.specs) == 1


async def test_full_capacity_is_503_with_retry_after(make_app, body):
    h = await make_app(make_settings(max_jobs=2, retry_after=7), body)
    for i in range(2):
        assert (await h.send(notification(job_id=f"AJ_{i}"))).json()["accepted"]
    r = await h.send(notification(job_id="AJ_2"))
    assert_refused(r, 503, "capacity")
    assert r.headers["retry-after"] == "7"
    await finish_and_wait(h.manager, body, "AJ_0")
    assert (await h.send(notification(job_id="AJ_2"))).json()["accepted"] is True


async def test_draining_is_503_with_retry_after(make_app, body):
    h = await make_app(make_settings(), body)
    h.manager.start_draining()
    r = await h.send(notification())
    assert_refused(r, 503, "draining")
    assert "retry-after" in r.headers
    assert (await h.client.get("/ready")).status_code == 503


async def test_no_token_and_no_keys_is_refused_clearly(make_app, body):
    h = await make_app(make_settings(), body)
    n = notification()
    del n["access_token"]
    assert_refused(await h.send(n), 200, "LIVEKIT_API_KEY")
    assert body.specs == []


async def test_missing_token_is_minted_with_agent_grants(make_app, body):
    h = await make_app(make_settings(livekit_api_key=API_KEY, livekit_api_secret=API_SECRET), body)
    n = notification()
    del n["access_token"]
    del n["server_url"]
    assert (await h.send(n)).json()["accepted"] is True
    await body.wait_running("AJ_abc123")
    spec = body.specs[0]
    assert spec.server_url == "wss://livekit.example.com"  # from settings.livekit_url
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(spec.access_token)
    assert claims.identity == "ai-agent-AJ_abc123"
    assert claims.video is not None
    assert claims.video.room == "my-room" and claims.video.room_join
    assert claims.video.can_publish and claims.video.can_subscribe
    assert claims.video.can_publish_data
    assert claims.kind == "agent"


async def test_local_rooms_are_refused_outside_dev_mode(make_app, body):
    h = await make_app(make_settings(), body)
    r = await h.send(notification(server_url="local://room"))
    assert_refused(r, 200, "local://")


async def test_local_rooms_are_allowed_in_dev_mode(make_app, body):
    h = await make_app(make_settings(dev_mode=True), body)
    assert (await h.send(notification(server_url="local://room"))).json()["accepted"]


async def test_webhook_outcomes_are_counted(make_app, body: ControlledBody):
    h = await make_app(make_settings(), body)
    await h.send(notification())
    await h.send(notification())
    await h.send(b"{", secret="wrong-secret-0123456789abcdef")
    text = (await h.client.get("/metrics")).text
    assert 'external_agent_webhooks_total{outcome="accepted"} 1.0' in text
    assert 'external_agent_webhooks_total{outcome="duplicate"} 1.0' in text
    assert 'external_agent_webhooks_total{outcome="bad_signature"} 1.0' in text
    assert 'external_agent_active_jobs{source="webhook"} 1.0' in text
    assert "external_agent_accept_latency_seconds_count" in text
