"""The in-memory room behaves like LiveKit: event order, identity rules, resampling, data."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from livekit import rtc
from room_kit import make_token, settle, tone_frame

from agents.transport.base import DisconnectCause, RemoteInfo, RoomListener, TransportError
from agents.transport.memory import MemoryHub, MemoryTransport


class EventLog(RoomListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.frames: list[rtc.AudioFrame] = []

    def participant_joined(self, info: RemoteInfo) -> None:
        self.events.append(("joined", info.identity, str(info.is_agent)))

    def participant_left(self, identity: str) -> None:
        self.events.append(("left", identity))

    def audio_track_subscribed(self, identity: str) -> None:
        self.events.append(("subscribed", identity))

    def audio_track_unsubscribed(self, identity: str) -> None:
        self.events.append(("unsubscribed", identity))

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        if not self.events or self.events[-1] != ("frame", identity):
            self.events.append(("frame", identity))
        self.frames.append(frame)

    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None:
        self.events.append(("video", identity, source))

    def data_received(self, identity: str | None, topic: str, payload: bytes) -> None:
        self.events.append(("data", str(identity), topic, payload.decode()))

    def connection_changed(self, state: Literal["reconnecting", "reconnected"]) -> None:
        self.events.append(("connection", state))

    def disconnected(self, cause: DisconnectCause, detail: str) -> None:
        self.events.append(("disconnected", cause))


def everyone(info: RemoteInfo) -> bool:
    return not info.is_agent


async def join(hub: MemoryHub, identity: str, room: str = "r1") -> tuple[MemoryTransport, EventLog]:
    transport = MemoryTransport(hub=hub)
    listener = EventLog()
    await transport.connect(url="local://x", token=make_token(room, identity),
                            listener=listener, wants_audio=everyone)
    return transport, listener


async def test_event_order_matches_livekit_join_publish_leave() -> None:
    hub = MemoryHub()
    agent, log = await join(hub, "ai-agent-1")
    room = hub.room("r1")
    alice = room.add_participant("alice")
    alice.publish_audio()
    for i in range(10):
        alice.push_audio(tone_frame(i))
    alice.leave()
    await settle()
    assert log.events == [
        ("joined", "alice", "False"), ("subscribed", "alice"), ("frame", "alice"),
        ("unsubscribed", "alice"), ("left", "alice"),
    ]
    await agent.aclose()


async def test_participants_present_before_join_are_listed_and_subscribed_after_connect() -> None:
    hub = MemoryHub()
    room = hub.room("r1")
    bob = room.add_participant("bob", name="Bob")
    bob.publish_audio()
    agent, log = await join(hub, "ai-agent-1")
    assert [p.identity for p in agent.remote_participants()] == ["bob"]
    await settle()
    assert log.events == [("subscribed", "bob")]  # no participant_connected for those present
    await agent.aclose()


async def test_48k_microphone_arrives_as_16k_mono_10ms_frames() -> None:
    hub = MemoryHub()
    agent, log = await join(hub, "ai-agent-1")
    alice = hub.room("r1").add_participant("alice")
    alice.publish_audio()
    for i in range(100):
        alice.push_audio(tone_frame(i))
    await settle()
    assert log.frames, "no audio delivered"
    assert {(f.sample_rate, f.num_channels, f.samples_per_channel) for f in log.frames} == {
        (16000, 1, 160)
    }
    # one second in, one second out, give or take the resampler's delay
    assert 95 <= len(log.frames) <= 100
    assert any(any(f.data) for f in log.frames)
    await agent.aclose()


async def test_agents_are_recognised_by_kind_or_identity_prefix_and_not_listened_to() -> None:
    hub = MemoryHub()
    agent, log = await join(hub, "ai-agent-1")
    room = hub.room("r1")
    other = room.add_participant("helper-bot", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    prefixed = room.add_participant("ai-agent-2")
    for sim in (other, prefixed):
        sim.publish_audio()
        sim.push_audio(tone_frame(0))
    await settle()
    assert ("joined", "helper-bot", "True") in log.events
    assert ("joined", "ai-agent-2", "True") in log.events
    assert not [e for e in log.events if e[0] in ("subscribed", "frame")]
    await agent.aclose()


async def test_agent_data_never_comes_back_to_itself_but_reaches_everyone_else() -> None:
    hub = MemoryHub()
    a1, log1 = await join(hub, "ai-agent-1")
    a2, log2 = await join(hub, "ai-agent-2")
    alice = hub.room("r1").add_participant("alice")
    await a1.publish_data(b'{"x":1}', topic="t")
    alice.send_data("hi", topic="chat")
    await settle()
    assert [e for e in log1.events if e[0] == "data"] == [("data", "alice", "chat", "hi")]
    assert [e for e in log2.events if e[0] == "data"] == [
        ("data", "ai-agent-1", "t", '{"x":1}'), ("data", "alice", "chat", "hi"),
    ]
    assert [(r.sender, r.topic, r.payload) for r in alice.received] == [
        ("ai-agent-1", "t", b'{"x":1}')
    ]
    await a1.aclose()
    await a2.aclose()


async def test_room_close_disconnects_agents_with_room_closed() -> None:
    hub = MemoryHub()
    agent, log = await join(hub, "ai-agent-1")
    await hub.room("r1").close()
    await settle()
    assert log.events[-1] == ("disconnected", "room_closed")
    assert hub.get("r1") is None
    await agent.aclose()


async def test_reconnect_and_connection_loss_are_reported() -> None:
    hub = MemoryHub()
    agent, log = await join(hub, "ai-agent-1")
    room = hub.room("r1")
    room.simulate_reconnect("ai-agent-1")
    room.drop_agent("ai-agent-1")
    await settle()
    assert log.events == [("connection", "reconnecting"), ("connection", "reconnected"),
                          ("disconnected", "disconnected")]
    await agent.aclose()


async def test_duplicate_identity_and_bad_tokens_are_refused() -> None:
    hub = MemoryHub()
    agent, _ = await join(hub, "ai-agent-1")
    with pytest.raises(TransportError, match="duplicate identity"):
        await join(hub, "ai-agent-1")
    with pytest.raises(TransportError, match="invalid token"):
        await MemoryTransport(hub=hub).connect(url="local://x", token="not-a-jwt",
                                               listener=EventLog(), wants_audio=everyone)
    with pytest.raises(TransportError, match="not a local room"):
        await MemoryTransport(hub=hub).connect(url="wss://x", token=make_token("r1", "a"),
                                               listener=EventLog(), wants_audio=everyone)
    await agent.aclose()


async def test_nothing_is_delivered_after_aclose_and_aclose_is_idempotent() -> None:
    hub = MemoryHub()
    agent, log = await join(hub, "ai-agent-1")
    alice = hub.room("r1").add_participant("alice")
    alice.publish_audio()
    alice.push_audio(tone_frame(0))
    await agent.aclose()
    await agent.aclose()
    alice.push_audio(tone_frame(1))
    await settle()
    assert not [e for e in log.events if e[0] == "frame"]
    assert hub.room("r1").agent_identities == []
    with pytest.raises(TransportError):
        await agent.publish_data(b"x", topic="t")


async def test_simulated_user_hears_agent_audio_through_a_real_audio_stream() -> None:
    hub = MemoryHub()
    agent, _ = await join(hub, "ai-agent-1")
    alice = hub.room("r1").add_participant("alice")
    output = await agent.publish_audio(sample_rate=24000)
    heard = alice.listen_to("ai-agent-1")
    for i in range(20):
        await output.capture_frame(tone_frame(i, rate=24000))
    await output.wait_for_playout()
    async with asyncio.timeout(3):
        await heard.wait_for_voiced(15)
    await alice.aclose()
    await agent.aclose()
