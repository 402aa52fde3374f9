"""``POST /livekit/webhook``: dispatch rules, admission through the one path, deduplication,
and the HTTP answers."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from dispatch_fakes import FakeJobManager
from fastapi import FastAPI, Request
from livekit import api
from livekit.protocol.webhook import WebhookEvent
from pydantic import ValidationError

from app.admission import Admission
from app.dispatch.config import DispatchRule, LiveKitWebhookSettings
from app.dispatch.livekit_webhook import (
    LiveKitWebhookHandler,
    build_livekit_webhook_router,
    match_rule,
)

KEY = "devkey"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"
RULES = [
    {"event": "room_started", "room_pattern": "support-*"},
    {"event": "participant_joined", "room_pattern": "sales-*", "metadata": '{"voice":"x"}'},
]


def event_body(
    event: str,
    *,
    event_id: str = "EV_1",
    room: str = "support-1",
    identity: str | None = None,
    kind: str = "STANDARD",
) -> bytes:
    data: dict[str, Any] = {
        "event": event,
        "id": event_id,
        "createdAt": str(int(time.time())),
        "room": {"sid": f"RM_{room}", "name": room},
    }
    if identity is not None:
        data["participant"] = {"sid": f"PA_{identity}", "identity": identity, "kind": kind}
    return json.dumps(data).encode()


def sign(body: bytes, *, secret: str = SECRET, ttl_minutes: int = 5) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = api.AccessToken(KEY, secret).with_sha256(digest)
    return token.with_ttl(datetime.timedelta(minutes=ttl_minutes)).to_jwt()


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager() -> FakeJobManager:
    return FakeJobManager(capacity=4)


@pytest.fixture
def handler(clock: Clock) -> LiveKitWebhookHandler:
    settings = LiveKitWebhookSettings.model_validate(
        {"rules": RULES, "dedup_window": 400, "max_body_bytes": 4096}
    )
    return LiveKitWebhookHandler(settings=settings, api_key=KEY, api_secret=SECRET, clock=clock)


@pytest.fixture
async def client(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.manager = manager

    def get_admission(request: Request) -> Admission:
        found: Admission = request.app.state.manager
        return found

    app.include_router(build_livekit_webhook_router(handler=handler, get_admission=get_admission))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


async def post(client: httpx.AsyncClient, body: bytes, auth: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/webhook+json"}
    if auth is not None:
        headers["Authorization"] = auth
    return await client.post("/livekit/webhook", content=body, headers=headers)


# -- rules ----------------------------------------------------------------------------------


def parse(body: bytes) -> WebhookEvent:
    from google.protobuf.json_format import Parse

    return Parse(body.decode(), WebhookEvent())


def rules(*raw: dict[str, Any]) -> list[DispatchRule]:
    return [DispatchRule.model_validate(r) for r in raw]


def test_room_started_rule_matches_the_room_pattern_only() -> None:
    rs = rules({"event": "room_started", "room_pattern": "support-*"})
    assert match_rule(rs, parse(event_body("room_started", room="support-7"))) is rs[0]
    assert match_rule(rs, parse(event_body("room_started", room="sales-7"))) is None
    assert match_rule(rs, parse(event_body("room_finished", room="support-7"))) is None


def test_participant_joined_rule_skips_agents_and_our_own_identities() -> None:
    rs = rules({"event": "participant_joined", "participant_pattern": "caller-*"})
    joined = event_body("participant_joined", identity="caller-1")
    assert match_rule(rs, parse(joined)) is rs[0]
    other = event_body("participant_joined", identity="visitor-1")
    assert match_rule(rs, parse(other)) is None
    agent = event_body("participant_joined", identity="caller-bot", kind="AGENT")
    assert match_rule(rs, parse(agent)) is None
    ours = rules({"event": "participant_joined"})
    assert match_rule(ours, parse(event_body("participant_joined", identity="ai-agent-x"))) is None
    with_agents = rules({"event": "participant_joined", "include_agents": True})
    assert match_rule(with_agents, parse(agent)) is with_agents[0]


def test_first_matching_rule_wins_and_sets_the_job_type() -> None:
    rs = rules(
        {"event": "participant_joined", "room_pattern": "vip-*", "job_type": "JT_ROOM"},
        {"event": "participant_joined"},
    )
    ev = parse(event_body("participant_joined", room="vip-1", identity="u"))
    assert match_rule(rs, ev) is rs[0]
    assert rs[0].effective_job_type() == "JT_ROOM"
    assert rs[1].effective_job_type() == "JT_PARTICIPANT"


def test_room_started_rule_cannot_ask_for_a_participant_job() -> None:
    with pytest.raises(ValidationError):
        DispatchRule.model_validate({"event": "room_started", "job_type": "JT_PUBLISHER"})
    with pytest.raises(ValidationError):
        DispatchRule.model_validate({"event": "track_published"})


# -- handler ----------------------------------------------------------------------------------


async def test_matching_room_started_dispatches_through_admission(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    body = event_body("room_started", event_id="EV_7", room="support-9")
    answer = await handler.handle(body, sign(body), admission=manager)
    assert answer.status == 200
    assert answer.body["accepted"] and answer.body["status"] == "dispatched"
    assert answer.body["job_id"] == "LW_EV_7"
    [req] = manager.requests
    assert req.source == "livekit_webhook"
    assert (req.job_id, req.job_type, req.room_name, req.room_sid) == (
        "LW_EV_7",
        "JT_ROOM",
        "support-9",
        "RM_support-9",
    )
    assert req.access_token is None and req.participant_identity is None
    assert manager.starts == ["LW_EV_7"]


async def test_participant_joined_dispatches_a_participant_job_with_rule_metadata(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    body = event_body("participant_joined", room="sales-2", identity="alice")
    answer = await handler.handle(body, sign(body), admission=manager)
    assert answer.body["status"] == "dispatched"
    [req] = manager.requests
    assert (req.job_type, req.participant_identity) == ("JT_PARTICIPANT", "alice")
    assert req.metadata == '{"voice":"x"}'


async def test_unmatched_event_is_accepted_but_ignored(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    body = event_body("room_started", room="other-room")
    answer = await handler.handle(body, sign(body), admission=manager)
    assert (answer.status, answer.body["status"]) == (200, "ignored")
    assert manager.requests == []


async def test_redelivered_event_gets_the_first_answer_and_no_second_job(
    handler: LiveKitWebhookHandler, manager: FakeJobManager, clock: Clock
) -> None:
    body = event_body("room_started")
    first = await handler.handle(body, sign(body), admission=manager)
    again = await handler.handle(body, sign(body), admission=manager)
    assert again.status == 200 and again.body["redelivered"]
    assert again.body["job_id"] == first.body["job_id"]
    assert len(manager.requests) == 1
    # After the window the event reaches the manager again, whose job-id idempotency holds.
    clock.now += 401
    late = await handler.handle(body, sign(body), admission=manager)
    assert late.body["status"] == "duplicate"
    assert manager.starts == ["LW_EV_1"]


async def test_busy_answers_503_and_a_retry_can_still_dispatch(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    manager.capacity = 0
    body = event_body("room_started")
    busy = await handler.handle(body, sign(body), admission=manager)
    assert busy.status == 503 and busy.retry_after == 5
    manager.capacity = 1
    retry = await handler.handle(body, sign(body), admission=manager)
    assert retry.body["status"] == "dispatched"


async def test_refused_by_policy_is_a_200_with_the_reason(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    manager.enabled_types = {"JT_ROOM"}
    body = event_body("participant_joined", room="sales-1", identity="bob")
    answer = await handler.handle(body, sign(body), admission=manager)
    assert (answer.status, answer.body["status"]) == (200, "refused")
    assert "JT_PARTICIPANT" in answer.body["error"]
    assert manager.starts == []


async def test_admission_crash_is_a_retryable_503_not_a_crash(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    class Broken(FakeJobManager):
        async def admit(self, request: Any) -> Any:
            raise RuntimeError("registry down")

    body = event_body("room_started")
    answer = await handler.handle(body, sign(body), admission=Broken())
    assert answer.status == 503 and "RuntimeError" in answer.body["error"]
    ok = await handler.handle(body, sign(body), admission=manager)  # not remembered
    assert ok.body["status"] == "dispatched"


async def test_event_without_id_gets_a_job_id_from_its_body(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    body = event_body("room_started", event_id="")
    a = await handler.handle(body, sign(body), admission=manager)
    b = await handler.handle(body, sign(body), admission=manager)
    assert a.body["job_id"] == b.body["job_id"] and a.body["job_id"].startswith("LW_h")
    assert b.body["status"] == "duplicate"
    assert len(manager.starts) == 1


# -- HTTP -------------------------------------------------------------------------------------


async def test_http_valid_webhook_is_dispatched(
    client: httpx.AsyncClient, manager: FakeJobManager
) -> None:
    body = event_body("room_started")
    r = await post(client, body, sign(body))
    assert r.status_code == 200
    assert r.json() == {
        "accepted": True,
        "status": "dispatched",
        "job_id": "LW_EV_1",
        "participant_identity": "ai-agent-LW_EV_1",
    }


@pytest.mark.parametrize("case", ["tampered", "wrong_key", "expired", "missing"])
async def test_http_unverified_webhooks_are_401_and_start_nothing(
    client: httpx.AsyncClient, manager: FakeJobManager, case: str
) -> None:
    body = event_body("room_started")
    auth: str | None = {
        "tampered": sign(body.replace(b"support-1", b"support-2")),
        "wrong_key": sign(body, secret="some-other-secret-long-enough-for-hs256"),
        "expired": sign(body, ttl_minutes=-5),
        "missing": None,
    }[case]
    r = await post(client, body, auth)
    assert r.status_code == 401
    assert r.json()["accepted"] is False and r.json()["error"]
    assert manager.requests == []


async def test_http_verified_garbage_is_400(client: httpx.AsyncClient) -> None:
    body = b'{"event": ["not", "a", "string"]}'
    r = await post(client, body, sign(body))
    assert r.status_code == 400 and r.json()["accepted"] is False


async def test_http_oversized_body_is_413(
    client: httpx.AsyncClient, manager: FakeJobManager
) -> None:
    body = event_body("room_started")[:-1] + b', "pad": "' + b"x" * 5000 + b'"}'
    r = await post(client, body, sign(body))
    assert r.status_code == 413
    assert manager.requests == []


async def test_http_busy_is_503_with_retry_after(
    client: httpx.AsyncClient, manager: FakeJobManager
) -> None:
    manager.capacity = 0
    body = event_body("room_started")
    r = await post(client, body, sign(body))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"


# -- issue 16: replays, wrong types, ids ---------------------------------------------------------


def event_at(created_at: float | None, *, event_id: str = "EV_old") -> bytes:
    data: dict[str, Any] = {"event": "room_started", "id": event_id,
                            "room": {"sid": "RM_1", "name": "support-1"}}
    if created_at is not None:
        data["createdAt"] = str(int(created_at))
    return json.dumps(data).encode()


async def test_a_replay_after_the_dedup_window_is_refused_by_createdAt(
    handler: LiveKitWebhookHandler, manager: FakeJobManager, clock: Clock
) -> None:
    body = event_body("room_started")
    token = sign(body)
    first = await handler.handle(body, token, admission=manager)
    assert first.body["status"] == "dispatched"
    # The same captured (body, token), once the dedup memory has forgotten the event id: the
    # wall clock has moved as far as the monotonic one.
    clock.now += 401
    wall = time.time() + 401
    late = LiveKitWebhookHandler(
        settings=handler.settings, api_key=KEY, api_secret=SECRET, clock=clock,
        wall_clock=lambda: wall,
    )
    replay = await late.handle(body, token, admission=manager)
    assert replay.status in (400, 401) and replay.body["accepted"] is False
    assert len(manager.requests) == 1


@pytest.mark.parametrize(
    ("offset", "error"),
    [(None, "event has no createdAt"), (-341, "event too old"),
     (120, "event from the future")],
)
async def test_events_outside_the_replay_window_are_refused(
    handler: LiveKitWebhookHandler, manager: FakeJobManager, offset: float | None, error: str
) -> None:
    body = event_at(None if offset is None else time.time() + offset)
    answer = await handler.handle(body, sign(body), admission=manager)
    assert answer.status == 400 and answer.body["error"].startswith(error)
    assert manager.requests == []


async def test_a_token_living_longer_than_the_replay_window_is_refused(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    body = event_body("room_started")
    answer = await handler.handle(body, sign(body, ttl_minutes=60), admission=manager)
    assert answer.status == 401 and "replay window" in answer.body["error"]
    assert manager.requests == []


def test_the_dedup_window_must_cover_the_leeway() -> None:
    with pytest.raises(ValueError, match="dedup_window"):
        LiveKitWebhookSettings.model_validate({"dedup_window": 100, "token_leeway": 60})
    assert LiveKitWebhookSettings().max_event_age == 540


@pytest.mark.parametrize(
    "patch",
    [{"room": "support-1"}, {"room": ["x"]}, {"participant": "u"},
     {"participant": {"identity": "u", "tracks": ["x"]}}, {"room": {"name": 5}}, {"event": 5}],
)
async def test_wrong_types_answer_400(
    handler: LiveKitWebhookHandler, manager: FakeJobManager, patch: dict[str, Any]
) -> None:
    data = {**json.loads(event_body("room_started")), **patch}
    body = json.dumps(data).encode()
    answer = await handler.handle(body, sign(body), admission=manager)
    assert answer.status == 400 and answer.body["accepted"] is False
    assert manager.requests == []


@pytest.mark.parametrize("event_id", ["a/b", "x" * 126, "É", "a b"])
async def test_event_ids_that_make_no_valid_job_id_answer_422(
    handler: LiveKitWebhookHandler, manager: FakeJobManager, event_id: str
) -> None:
    body = event_body("room_started", event_id=event_id)
    answer = await handler.handle(body, sign(body), admission=manager)
    assert answer.status == 422 and answer.body["accepted"] is False
    assert manager.requests == []


async def test_huge_integers_in_a_signed_event_answer_400(
    handler: LiveKitWebhookHandler, manager: FakeJobManager
) -> None:
    settings = handler.settings.model_copy(update={"max_body_bytes": 65536})
    handler = LiveKitWebhookHandler(settings=settings, api_key=KEY, api_secret=SECRET)
    template = json.loads(event_body("room_started"))
    for where, digits in (("unknown", "9" * 5000), ("room", "9" * 4000), ("room", "9" * 5000)):
        if where == "room":
            template["room"]["numParticipants"] = "@@"
        else:
            template["unknownField"] = "@@"
        body = json.dumps(template).replace('"@@"', digits).encode()
        answer = await handler.handle(body, sign(body), admission=manager)
        assert answer.status == 400, (where, len(digits))
    assert manager.requests == []
