"""``lk.agent.state`` on a real ``livekit-server``: the attribute announces the agent the moment
it joins (a participant that publishes nothing is otherwise told to the room only in the
server's 3 s batch), follows the agent's status, and a token that may not set it costs the job
nothing but a warning in its record."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from livekit import api, rtc
from livekit_env import LiveKitServer, RealCaller
from room_kit import Harness, make_spec
from stage import GREETING, real_service

from agents.agent_state import AGENT_STATE
from agents.entry import ListeningConversation

pytestmark = [pytest.mark.livekit, pytest.mark.timeout(120)]


class Watcher:
    """What a caller's SDK reports about the agent: its arrival (with the attributes it came
    with), attribute changes, and tracks it published."""

    def __init__(self, room: rtc.Room) -> None:
        self.arrived: dict[str, dict[str, str]] = {}
        self.states: list[str] = []
        self.tracks: list[str] = []
        self.changed = asyncio.Event()
        room.on("participant_connected", self._connected)
        room.on("participant_attributes_changed", self._attributes)
        room.on("track_published", lambda pub, p: self._note(self.tracks, p.identity))

    def _note(self, into: list[str], value: str) -> None:
        into.append(value)
        self.changed.set()

    def _connected(self, p: rtc.RemoteParticipant) -> None:
        self.arrived[p.identity] = dict(p.attributes)
        if AGENT_STATE in p.attributes:
            self._note(self.states, p.attributes[AGENT_STATE])
        self.changed.set()

    def _attributes(self, changed: dict[str, str], p: rtc.Participant) -> None:
        if AGENT_STATE in changed:
            self._note(self.states, changed[AGENT_STATE])

    async def until(self, cond: Any, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not cond():
                self.changed.clear()
                await self.changed.wait()


async def test_a_listening_job_is_announced_by_its_state_and_publishes_no_track(
    live_server: LiveKitServer,
) -> None:
    room_name = "state-listen"
    caller = rtc.Room()
    seen = Watcher(caller)
    await caller.connect(live_server.url, live_server.token(room_name, "lena"))
    h = Harness(conversation_factory=ListeningConversation)  # no text-to-speech
    spec = make_spec(room=room_name, url=live_server.url, job_id="AJ_state1",
                     token=live_server.agent_token(room_name, "ai-agent-AJ_state1"))
    h.start(spec)
    try:
        await h.running()
        await seen.until(lambda: seen.states[-1:] == ["listening"])
        # It arrived with its state already set: the attribute update announced it, not the
        # server's batch (which would have told of a participant without attributes first).
        assert seen.arrived[spec.agent_identity].get(AGENT_STATE) in (
            "initializing", "listening"), seen.arrived
        assert seen.states[0] == seen.arrived[spec.agent_identity][AGENT_STATE]
        await asyncio.sleep(1.0)
        assert seen.tracks == []  # a job that never speaks publishes nothing
    finally:
        await caller.disconnect()
    outcome = await h.outcome()
    assert outcome.end_reason == "room_empty"
    assert not [w for w in h.reporter.records.get("warnings", []) if AGENT_STATE in w]


async def test_a_token_that_may_not_set_attributes_costs_a_warning_not_the_job(
    live_server: LiveKitServer,
) -> None:
    room_name = "state-refused"
    identity = "ai-agent-AJ_state2"
    token = (api.AccessToken(live_server.api_key, live_server.api_secret)
             .with_identity(identity).with_kind("agent")
             .with_grants(api.VideoGrants(room_join=True, room=room_name, can_publish=True,
                                          can_subscribe=True, can_publish_data=True))
             .to_jwt())  # a dispatcher's token without canUpdateOwnMetadata
    caller = rtc.Room()
    seen = Watcher(caller)
    await caller.connect(live_server.url, live_server.token(room_name, "mira"))
    h = Harness(conversation_factory=ListeningConversation)
    h.start(make_spec(room=room_name, url=live_server.url, job_id="AJ_state2", token=token))
    try:
        await h.running()
        await seen.until(lambda: identity in seen.arrived)  # the server's batch, later
        await asyncio.sleep(0.5)
    finally:
        await caller.disconnect()
    outcome = await h.outcome()
    assert outcome.end_reason == "room_empty"
    record = h.reporter.records
    warnings = [w for w in record.get("warnings", []) if AGENT_STATE in w]
    assert len(warnings) == 1 and "NotAllowed" in warnings[0], record.get("warnings")
    assert record["counters"]["agent_state_failed"] == 1  # refused once, never tried again
    assert seen.states == []


async def test_the_state_follows_the_agent_speaking_and_listening(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    service = real_service(live_server, tmp_path)
    await service.start()
    caller = RealCaller(server=live_server, room="state-speak", identity="nora")
    seen = Watcher(caller.room)
    await caller.join()
    try:
        lk = live_server.api()
        try:
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name="external-agent", room="state-speak"))
        finally:
            await lk.aclose()
        greeting = await caller.wait_message(
            "transcript_chunk", lambda d: bool(d["is_final"])
            and str(d["participant_id"]).startswith("ai-agent-"))
        assert greeting.data["text"] == GREETING
        await seen.until(lambda: "speaking" in seen.states and seen.states[-1] == "listening")
        assert seen.states[0] in ("initializing", "listening"), seen.states
        assert seen.states.index("speaking") < len(seen.states) - 1
    finally:
        await caller.leave()
        await service.stop()
