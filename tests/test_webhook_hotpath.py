"""The webhook's lean ASGI path answers exactly what the contract says, byte for byte, and its
edges (streamed bodies, disconnects, jobs cancelled before they ran) lose nothing."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import ControlledBody, make_settings, notification, signed

from app.admission import JobRequest
from app.intake.pipeline import accepted_content
from app.jobs.records import StoredAnswer
from app.jobs.registry import MemoryJobRegistry
from app.main import create_app
from app.metrics import Metrics
from app.runtime import Runtime


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("identity", "name", "metadata"),
    [
        ("ai-agent-AJ_1", "AI Assistant", '{"type":"ai"}'),
        ("ai-agent-AJ_é@x:y", 'Ägent "007"', "tab\there\nnewline \\ ☃"),
        ("", "", ""),
    ],
)
def test_accepted_content_is_the_compact_json_dump(identity, name, metadata):
    expected = {
        "accepted": True,
        "participant_identity": identity,
        "participant_name": name,
        "participant_metadata": metadata,
    }
    assert accepted_content(identity, name, metadata) == compact(expected)


async def test_answers_are_compact_json_with_content_headers(make_app, body):
    # Job ids are ASCII (one rule at every door); a name need not be, and is escaped.
    h = await make_app(make_settings(max_jobs=1, retry_after=9, agent_name="AI Assistänt"), body)
    ok = await h.send(notification(job_id="AJ_1"))
    assert ok.status_code == 200
    assert ok.content == compact(
        {
            "accepted": True,
            "participant_identity": "ai-agent-AJ_1",
            "participant_name": "AI Assistänt",
            "participant_metadata": '{"type":"ai"}',
        }
    )
    assert ok.headers["content-type"] == "application/json"
    assert ok.headers["content-length"] == str(len(ok.content))
    assert "retry-after" not in ok.headers
    busy = await h.send(notification(job_id="AJ_2"))
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "9")
    assert busy.content == compact({"accepted": False, "error": "at capacity"})
    stale = await h.send(notification(job_id="AJ_3"), timestamp=1)
    assert stale.status_code == 401
    assert stale.content == compact({"accepted": False, "error": "stale timestamp"})


@pytest.fixture
async def app(body: ControlledBody) -> AsyncIterator[Any]:
    """The service app with its lifespan running, called directly through ASGI."""
    service = create_app(make_settings(), job_body=body)
    async with service.router.lifespan_context(service):
        yield service


async def test_invalid_content_length_is_400_and_spawns_nothing(app, body):
    raw, headers = signed(notification())
    sent = await call(app, raw, headers | {"content-length": "12x"})
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {"accepted": False, "error": "invalid Content-Length"}
    assert app.state.runtime.manager.active_jobs == 0 and body.specs == []


async def test_body_in_several_chunks_under_the_limit_is_accepted(make_app, body):
    h = await make_app(make_settings(), body)
    raw, headers = signed(notification())

    async def chunks():
        for i in range(0, len(raw), 50):
            yield raw[i : i + 50]

    r = await h.client.post("/livekit/agent", content=chunks(), headers=headers)
    assert r.json()["accepted"] is True
    await body.wait_running("AJ_abc123")


async def call(
    app: Any, raw: bytes, headers: dict[str, str], *, disconnect_after: int | None = None
) -> list[dict[str, Any]]:
    """One request straight through the ASGI app; returns the messages it sent."""
    parts = [raw] if disconnect_after is None else [raw[:disconnect_after]]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return {"type": "http.request", "body": parts.pop(0), "more_body": True}
        if disconnect_after is not None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/livekit/agent",
        "raw_path": b"/livekit/agent",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    await app(scope, receive, send)
    return sent


async def test_client_gone_mid_body_gets_no_answer_and_spawns_nothing(app, body):
    raw, headers = signed(notification())
    assert await call(app, raw, headers, disconnect_after=20) == []
    assert app.state.runtime.manager.active_jobs == 0 and body.specs == []
    # The same notification in full is then accepted (nothing was claimed).
    sent = await call(app, raw, headers)
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"])["accepted"] is True
    await body.wait_running("AJ_abc123")


def offer(job_id: str) -> JobRequest:
    return JobRequest(
        source="webhook",
        job_id=job_id,
        dispatch_id="AD_1",
        job_type="JT_ROOM",
        room_name="room",
        access_token="token",
        server_url="wss://livekit.example.com",
    )


async def test_job_cancelled_before_its_first_step_is_finished_and_frees_its_slot():
    body = ControlledBody()
    runtime = Runtime(settings=make_settings(max_jobs=1), job_body=body, metrics=Metrics())
    manager = runtime.manager
    try:
        assert (await manager.admit(offer("AJ_1"))).verdict == "accepted"
        # No await in between: the job's task has not run a single step.
        assert await manager.cancel("AJ_1", reason="operator") is True
        job = manager.get_job("AJ_1")
        assert job is not None and (job.state, job.reason) == ("cancelled", "operator")
        assert manager.active_jobs == 0 and body.specs == []
        assert (await manager.admit(offer("AJ_2"))).verdict == "accepted"
    finally:
        await runtime.aclose()


async def test_shutdown_right_after_an_admission_finishes_the_unstarted_job():
    body = ControlledBody()
    runtime = Runtime(settings=make_settings(), job_body=body, metrics=Metrics())
    manager = runtime.manager
    assert (await manager.admit(offer("AJ_1"))).verdict == "accepted"
    await runtime.aclose()
    job = manager.get_job("AJ_1")
    assert job is not None and (job.state, job.reason) == ("cancelled", "service shutdown")
    assert manager.active_jobs == 0
    await asyncio.sleep(0)
    assert body.specs == []


async def test_webhook_is_in_the_openapi_schema_with_its_body_model(make_app, body):
    h = await make_app(make_settings(dev_mode=True), body)
    schema = (await h.client.get("/openapi.json")).json()
    operation = schema["paths"]["/livekit/agent"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/JobNotification"
    components = schema["components"]["schemas"]
    room = components["JobNotification"]["properties"]["room"]["$ref"].rsplit("/", 1)[1]
    assert "name" in components[room]["properties"]
    assert {"200", "401", "413", "422", "503"} <= set(operation["responses"])
    assert "/health" in schema["paths"]  # the rest of the API is still there


def test_webhook_path_from_settings_is_routed_first():
    app = create_app(make_settings(dev_mode=True, webhook_path="/hooks/job"))
    assert getattr(app.router.routes[0], "path", None) == "/hooks/job"


def test_remembered_job_ids_do_not_grow_the_collected_heap():
    registry = MemoryJobRegistry(ttl=60, max_entries=10_000)
    answer = StoredAnswer(
        participant_identity="ai-agent-x", participant_name="n", participant_metadata="m"
    )
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2000):
        assert registry.claim_now(f"AJ_{i}", answer) is None
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # not one object per entry
    assert registry.lookup("AJ_5") == answer
    assert registry.claim_now("AJ_5", answer) == answer and len(registry) == 2000
