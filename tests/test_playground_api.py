"""The playground's HTTP side: where it is open, the session it creates (a room, a caller token,
the agent dispatched through the same admission as every door), and its error answers. The room
is the in-memory one (``local://``); the browser tests drive the page against a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import ADMIN, API_KEY, API_SECRET, make_settings
from room_kit import settle

from agents.entry import ListeningConversation, make_job_body
from agents.messages import TodoList
from agents.transport.memory import MemoryHub
from agents.transport.token import read_token

PG_TOKEN = "playground-token-0123456789abcdef"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def dev_settings(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "dev_mode": True,
        "livekit_url": "local://dev",
        "livekit_api_key": API_KEY,
        "livekit_api_secret": API_SECRET,
        "worker": {"enabled": False},  # no native dispatch: the tests never dial a server
    }
    values.update(overrides)
    return make_settings(**values)


def listening_body(settings: Any, hub: MemoryHub) -> Any:
    return make_job_body(settings.agent, hub=hub, conversation_factory=ListeningConversation)


async def test_production_without_a_token_has_no_playground(make_app, body) -> None:
    settings = make_settings(livekit_api_key=API_KEY, livekit_api_secret=API_SECRET,
                             worker={"enabled": False})
    h = await make_app(settings, body)
    assert (await h.client.get("/playground")).status_code == 404
    assert (await h.client.get("/playground/info")).status_code == 404
    assert (await h.client.post("/playground/session", json={})).status_code == 404
    assert h.manager.list_jobs() == []


async def test_disabled_playground_is_off_even_in_dev_mode(make_app, body) -> None:
    h = await make_app(dev_settings(playground={"enabled": False}), body)
    assert (await h.client.get("/playground")).status_code == 404
    assert (await h.client.post("/playground/session", json={})).status_code == 404


async def test_dev_mode_serves_the_page_and_its_scripts_from_the_package(make_app, body) -> None:
    h = await make_app(dev_settings(), body)
    page = await h.client.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert ">Start call<" in page.text and 'src="/web/playground.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    script = await h.client.get("/web/playground.js")
    assert script.status_code == 200 and "/web/livekit-client.esm.js" in script.text
    bundle = await h.client.get("/web/livekit-client.esm.js")
    assert bundle.status_code == 200 and bundle.text.startswith("/*! livekit-client ")


async def test_a_configured_token_is_required_in_dev_mode_too(make_app, body) -> None:
    h = await make_app(dev_settings(playground={"token": PG_TOKEN}), body)
    assert (await h.client.get("/playground")).status_code == 200  # the page holds no data
    r = await h.client.post("/playground/session", json={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert (await h.client.get("/playground/info")).status_code == 401
    wrong = {"Authorization": "Bearer not-the-playground-token"}
    assert (await h.client.post("/playground/session", json={}, headers=wrong)).status_code == 401
    auth = {"Authorization": f"Bearer {PG_TOKEN}"}
    assert (await h.client.get("/playground/info", headers=auth)).status_code == 200
    assert h.manager.list_jobs() == []


async def test_a_token_opens_the_playground_outside_dev_mode(make_app, body) -> None:
    settings = make_settings(livekit_api_key=API_KEY, livekit_api_secret=API_SECRET,
                             worker={"enabled": False}, playground={"token": PG_TOKEN})
    h = await make_app(settings, body)
    auth = {"Authorization": f"Bearer {PG_TOKEN}"}
    r = await h.client.post("/playground/session", json={}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["server_url"] == "wss://livekit.example.com"
    await body.wait_running(r.json()["job_id"])


def test_a_placeholder_playground_token_is_refused_outside_dev_mode() -> None:
    with pytest.raises(ValueError, match="playground.token"):
        make_settings(playground={"token": "changeme"})


async def test_session_dispatches_the_agent_into_the_callers_room(make_app) -> None:
    hub = MemoryHub()
    settings = dev_settings()
    h = await make_app(settings, listening_body(settings, hub))
    persona = {"greeting": "Hi there", "todo_items": [
        {"id": "name", "description": "your name", "required": True}]}
    r = await h.client.post("/playground/session", json={"persona": persona, "name": "Ann"})
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["room"].startswith("playground-") and session["job_id"].startswith("PG_")
    claims = read_token(session["token"])
    assert claims.room == session["room"] and claims.identity == session["identity"]
    assert claims.can_publish and claims.can_subscribe and claims.can_publish_data

    caller = hub.room(session["room"]).add_participant(session["identity"])
    async with asyncio.timeout(5):
        todo = await caller.wait_for_message("todo_list")
    assert isinstance(todo, TodoList) and [i.id for i in todo.data.items] == ["name"]
    job = (await h.client.get(f"/jobs/{session['job_id']}", headers=ADMIN_AUTH)).json()
    assert job["source"] == "playground" and job["job_type"] == "JT_ROOM"
    assert job["agent_identity"] == session["agent_identity"]
    caller.send_data(json.dumps({"type": "user_text", "data": "hello"}).encode())
    await settle(20)
    events = (await h.client.get(f"/console/api/jobs/{session['job_id']}/events",
                                 headers=ADMIN_AUTH)).json()
    kinds = [e["type"] for e in events["events"]]
    assert "todo_list" in kinds and "agent_status" in kinds and "user_text" in kinds
    typed = next(e for e in events["events"] if e["type"] == "user_text")
    assert typed["data"]["text"] == "hello" and typed["data"]["participant_id"] == caller.identity
    ended = asyncio.Event()
    h.manager.on_job_end(lambda job_id, _s, _r: ended.set())
    caller.leave()
    async with asyncio.timeout(5):
        await ended.wait()
    job = (await h.client.get(f"/jobs/{session['job_id']}", headers=ADMIN_AUTH)).json()
    assert job["state"] == "completed" and job["reason"] == "room_empty"


async def test_each_session_is_a_new_room_and_job(make_app, body) -> None:
    h = await make_app(dev_settings(), body)
    first = (await h.client.post("/playground/session", json={})).json()
    second = (await h.client.post("/playground/session", json={})).json()
    assert first["room"] != second["room"] and first["job_id"] != second["job_id"]
    assert first["token"] != second["token"]


async def test_a_full_service_answers_503_with_retry_after(make_app, body) -> None:
    h = await make_app(dev_settings(max_jobs=1, retry_after=7), body)
    first = await h.client.post("/playground/session", json={})
    assert first.status_code == 201
    busy = await h.client.post("/playground/session", json={})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "7"
    assert busy.json() == {"error": "at capacity", "retry_after": 7}
    assert h.manager.active_jobs == 1


async def test_a_draining_service_answers_503(make_app, body) -> None:
    h = await make_app(dev_settings(), body)
    h.manager.start_draining()
    r = await h.client.post("/playground/session", json={})
    assert r.status_code == 503 and r.json()["error"] == "draining"


async def test_policy_refusal_is_409_with_the_reason(make_app, body) -> None:
    h = await make_app(dev_settings(job_types=["JT_PUBLISHER"]), body)
    r = await h.client.post("/playground/session", json={})
    assert r.status_code == 409 and "JT_ROOM not enabled" in r.json()["error"]


async def test_without_api_keys_the_session_says_what_is_missing(make_app, body) -> None:
    h = await make_app(dev_settings(livekit_api_key=None, livekit_api_secret=None), body)
    r = await h.client.post("/playground/session", json={})
    assert r.status_code == 409 and "LIVEKIT_API_KEY" in r.json()["error"]
    h2 = await make_app(dev_settings(livekit_url=None), body)
    r = await h2.client.post("/playground/session", json={})
    assert r.status_code == 409 and "LIVEKIT_URL" in r.json()["error"]


@pytest.mark.parametrize(
    "payload",
    [
        {"persona": {"api_key": "x"}},  # only the metadata allowlist
        {"persona": {"todo_items": [{"id": "a", "description": "x"}] * 2}},  # duplicate ids
        {"persona": {"greeting": "x" * 1001}},
        {"name": ""},
        {"surprise": 1},
    ],
)
async def test_bad_session_requests_are_422_and_start_nothing(make_app, body, payload) -> None:
    h = await make_app(dev_settings(), body)
    r = await h.client.post("/playground/session", json=payload)
    assert r.status_code == 422
    assert h.manager.list_jobs() == []


async def test_info_offers_the_configured_persona_as_defaults(make_app, body) -> None:
    settings = dev_settings(agent={"persona": {
        "greeting": "Hello!", "todo_items": [{"id": "n", "description": "name", "required": True}]
    }})
    h = await make_app(settings, body)
    info = (await h.client.get("/playground/info")).json()
    assert info["persona"]["greeting"] == "Hello!" and info["vision"] is False
    assert info["persona"]["todo_items"][0]["id"] == "n"


async def test_the_public_url_is_what_the_browser_dials(make_app, body) -> None:
    settings = dev_settings(livekit_url="ws://livekit.internal:7880",
                            playground={"public_url": "wss://lk.example.com"})
    h = await make_app(settings, body)
    session = (await h.client.post("/playground/session", json={})).json()
    assert session["server_url"] == "wss://lk.example.com"
    await body.wait_running(session["job_id"])
    assert body.specs[-1].server_url == "ws://livekit.internal:7880"


async def test_info_offers_camera_and_screen_share_when_the_agent_watches(make_app, body) -> None:
    h = await make_app(dev_settings(agent={"room": {"video": True}}), body)
    assert (await h.client.get("/playground/info")).json()["vision"] is True
