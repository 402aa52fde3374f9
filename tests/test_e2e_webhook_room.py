"""Webhook to participant, end to end through the real service: a signed notification whose
``server_url`` is a ``local://`` room puts the agent in the in-memory room."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import ADMIN, API_KEY, API_SECRET, make_settings, notification
from room_kit import make_token, settle

from agents.entry import ListeningConversation, make_job_body
from agents.messages import AgentStatus
from agents.transport.memory import MemoryHub


def listening_body(settings: Any, hub: MemoryHub) -> Any:
    return make_job_body(settings.agent, hub=hub, conversation_factory=ListeningConversation)


async def job_view(h: Any, job_id: str) -> dict[str, Any]:
    r = await h.client.get(f"/jobs/{job_id}", headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    return view


async def wait_for_state(h: Any, job_id: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            view = await job_view(h, job_id)
            if view["state"] == state:
                return view
            await settle(20)


async def test_signed_notification_puts_a_listening_agent_in_the_local_room(make_app) -> None:
    hub = MemoryHub()
    settings = make_settings(dev_mode=True)
    h = await make_app(settings, listening_body(settings, hub))
    room = hub.room("e2e-room")
    user = room.add_participant("user123")
    token = make_token("e2e-room", "ai-agent-AJ_e2e1")
    r = await h.send(notification(
        job_id="AJ_e2e1", job_type="JT_PARTICIPANT", server_url="local://dev",
        room={"sid": "RM_1", "name": "e2e-room"},
        participant={"sid": "PA_1", "identity": "user123"}, access_token=token,
    ))
    assert r.status_code == 200 and r.json()["accepted"] is True
    async with asyncio.timeout(5):
        status = await user.wait_for_message("agent_status")
    assert isinstance(status, AgentStatus) and status.data.status == "listening"
    assert room.agent_identities == ["ai-agent-AJ_e2e1"]
    await wait_for_state(h, "AJ_e2e1", "running")
    user.send_data(b'{"type":"user_text","data":"hello agent"}')
    await settle()
    user.leave()
    view = await wait_for_state(h, "AJ_e2e1", "completed")
    assert view["reason"] == "participant_left"
    transcript = view["record"]["transcript"]
    assert [(t["participant_id"], t["text"]) for t in transcript] == [("user123", "hello agent")]
    assert room.agent_identities == []


async def test_notification_without_a_token_gets_one_minted_and_joins(make_app) -> None:
    hub = MemoryHub()
    settings = make_settings(dev_mode=True, livekit_api_key=API_KEY,
                             livekit_api_secret=API_SECRET)
    h = await make_app(settings, listening_body(settings, hub))
    room = hub.room("minted-room")
    user = room.add_participant("someone")
    body = notification(job_id="AJ_e2e2", server_url="local://dev",
                        room={"sid": "RM_2", "name": "minted-room"})
    del body["access_token"]
    r = await h.send(body)
    assert r.json()["accepted"] is True
    async with asyncio.timeout(5):
        await user.wait_for_message("todo_list")
    r = await h.client.delete("/jobs/AJ_e2e2", headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 202
    view = await wait_for_state(h, "AJ_e2e2", "cancelled")
    assert view["record"]["end_reason"] == "cancelled"
    assert room.agent_identities == []


async def test_local_room_with_a_bad_token_fails_the_job_with_the_reason(make_app) -> None:
    hub = MemoryHub()
    settings = make_settings(dev_mode=True)
    h = await make_app(settings, listening_body(settings, hub))
    expired = make_token("r", "ai-agent-AJ_e2e3", ttl=-300)
    r = await h.send(notification(job_id="AJ_e2e3", server_url="local://dev",
                                  room={"sid": "RM_3", "name": "r"}, access_token=expired))
    assert r.json()["accepted"] is True
    view = await wait_for_state(h, "AJ_e2e3", "failed")
    assert view["reason"].startswith("token expired")
