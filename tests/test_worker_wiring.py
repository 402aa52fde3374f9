"""The LiveKit doors wired into the real app: native dispatch and LiveKit webhooks go through
the real job manager and show in ``/jobs`` with their source, like webhook jobs."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_protocol_server import AgentProtocolServer, make_job
from conftest import ADMIN, ControlledBody, make_settings
from livekit import api
from livekit.protocol import agent as pb

LK_KEY = "APIwiringkey"
LK_SECRET = "wiring-api-secret-0123456789abcdef0123"


@pytest.fixture
async def server() -> AsyncIterator[AgentProtocolServer]:
    srv = AgentProtocolServer(api_key=LK_KEY, api_secret=LK_SECRET)
    await srv.start()
    yield srv
    await srv.aclose()


def lk_settings(url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "livekit_url": url,
        "livekit_api_key": LK_KEY,
        "livekit_api_secret": LK_SECRET,
        "worker": {"agent_name": "wired", "reconnect_initial_delay": 0.02},
        "livekit_webhook": {"rules": [{"event": "room_started", "room_pattern": "support-*"}]},
    }
    values.update(overrides)
    return make_settings(**values)


async def job_view(h: Any, job_id: str) -> dict[str, Any]:
    r = await h.client.get(f"/jobs/{job_id}", headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    return view


async def test_dispatched_job_runs_in_the_manager_and_reports_its_end(
    make_app: Any, body: ControlledBody, server: AgentProtocolServer
) -> None:
    h = await make_app(lk_settings(server.url), body)
    await server.wait_connections(1)
    assert server.received[0].msg.register.agent_name == "wired"

    job = make_job("AJ_w1", room="wired-room", agent_name="wired")
    resp = await server.request_availability(job)
    assert resp.available and resp.participant_identity
    await server.assign(job, token="server-minted-token")
    await body.wait_running("AJ_w1")
    spec = body.specs[0]
    assert (spec.source, spec.room_name, spec.access_token) == (
        "dispatch",
        "wired-room",
        "server-minted-token",
    )
    assert spec.server_url == server.url
    assert (await job_view(h, "AJ_w1"))["source"] == "dispatch"

    n = len(server.received)
    body.finish("AJ_w1")
    end = await server.wait_for(
        lambda r: r.kind == "update_job" and r.msg.update_job.status == pb.JS_SUCCESS, after=n
    )
    assert end.msg.update_job.job_id == "AJ_w1"


async def test_livekit_webhook_dispatches_a_job_with_a_minted_token(
    make_app: Any, body: ControlledBody, server: AgentProtocolServer
) -> None:
    h = await make_app(lk_settings(server.url, worker={"enabled": False}), body)
    raw = json.dumps(
        {
            "event": "room_started",
            "id": "EV_w1",
            "createdAt": str(int(time.time())),
            "room": {"sid": "RM_w", "name": "support-7"},
        }
    ).encode()
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode()
    token = (
        api.AccessToken(LK_KEY, LK_SECRET)
        .with_sha256(digest)
        .with_ttl(datetime.timedelta(minutes=5))
        .to_jwt()
    )
    r = await h.client.post("/livekit/webhook", content=raw, headers={"Authorization": token})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dispatched"
    await body.wait_running("LW_EV_w1")
    spec = body.specs[0]
    assert (spec.source, spec.room_name, spec.job_type) == (
        "livekit_webhook",
        "support-7",
        "JT_ROOM",
    )
    claims = api.TokenVerifier(LK_KEY, LK_SECRET).verify(spec.access_token)
    assert claims.video is not None and claims.video.room == "support-7"
    assert (await job_view(h, "LW_EV_w1"))["source"] == "livekit_webhook"
    assert server.connections == 0  # worker disabled


async def test_without_api_credentials_both_doors_are_off(
    make_app: Any, body: ControlledBody, server: AgentProtocolServer
) -> None:
    h = await make_app(lk_settings(server.url, livekit_api_key=None, livekit_api_secret=None), body)
    r = await h.client.post("/livekit/webhook", content=b"{}")
    assert r.status_code == 404
    assert server.connections == 0 and server.received == []
