"""The participant's life in the in-memory room: who it listens to, when it leaves, and that it
always leaves cleanly (nothing published, no task left behind)."""

from __future__ import annotations

import asyncio
import json

import pytest
from livekit import rtc
from room_kit import Harness, make_spec, make_token, settle, task_snapshot, tone_frame

from agents.entry import ListeningConversation
from agents.job import JobFailed
from agents.participant import AgentParticipant, ConversationContext
from agents.transport.base import TrackAudioOutput
from agents.transport.memory import MemoryHub, MemoryTransport


async def test_publisher_job_hears_only_its_target_and_ends_when_the_target_leaves() -> None:
    h = Harness()
    before = task_snapshot()
    room = h.hub.room("room-1")
    target, other = room.add_participant("alice"), room.add_participant("bob")
    for sim in (target, other):
        sim.publish_audio()
    h.start(make_spec(job_type="JT_PUBLISHER", target="alice"))
    await h.running()
    for i in range(30):
        target.push_audio(tone_frame(i))
        other.push_audio(tone_frame(i))
    await settle()
    assert set(h.conversation.audio_frames) == {"alice"}
    assert h.conversation.audio_frames["alice"] >= 25
    other.leave()  # someone else leaving does not end the job
    await settle()
    assert not h.task.done()  # type: ignore[union-attr]
    target.leave()
    outcome = await h.outcome()
    assert outcome.end_reason == "participant_left"
    assert "alice" in h.conversation.speakers_left
    assert room.agent_identities == []
    assert task_snapshot() == before


async def test_participant_job_with_the_same_rules_as_publisher() -> None:
    h = Harness()
    room = h.hub.room("room-1")
    alice = room.add_participant("alice")
    h.start(make_spec(job_type="JT_PARTICIPANT", target="alice"))
    await h.running()
    alice.leave()
    assert (await h.outcome()).end_reason == "participant_left"


async def test_room_job_hears_every_human_and_ends_when_only_agents_are_left() -> None:
    h = Harness()
    room = h.hub.room("room-1")
    alice, bob = room.add_participant("alice"), room.add_participant("bob")
    bot = room.add_participant("bot", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
    for sim in (alice, bob, bot):
        sim.publish_audio()
    h.start(make_spec(job_type="JT_ROOM"))
    await h.running()
    for i in range(20):
        for sim in (alice, bob, bot):
            sim.push_audio(tone_frame(i))
    await settle()
    assert set(h.conversation.audio_frames) == {"alice", "bob"}
    alice.leave()
    await settle()
    assert not h.task.done()  # type: ignore[union-attr]
    late = room.add_participant("carol")  # joins later: listened to as well
    late.publish_audio()
    for i in range(10):
        late.push_audio(tone_frame(i))
    bob.leave()
    await settle()
    assert "carol" in h.conversation.audio_frames
    assert not h.task.done()  # type: ignore[union-attr]
    late.leave()
    outcome = await h.outcome()
    assert outcome.end_reason == "room_empty"
    assert set(outcome.record["speakers"]) == {"alice", "bob", "carol"}


async def test_absent_target_ends_the_job_after_the_wait() -> None:
    h = Harness(config_overrides={"room": {"participant_wait": 0.05}})
    h.start(make_spec(job_type="JT_PUBLISHER", target="nobody"))
    assert (await h.outcome()).end_reason == "participant_absent"


async def test_target_arriving_within_the_wait_keeps_the_job() -> None:
    h = Harness(config_overrides={"room": {"participant_wait": 0.3}})
    h.start(make_spec(job_type="JT_PUBLISHER", target="alice"))
    await h.running()
    alice = h.hub.room("room-1").add_participant("alice")
    await asyncio.sleep(0.5)
    assert not h.task.done()  # type: ignore[union-attr]
    alice.leave()
    assert (await h.outcome()).end_reason == "participant_left"


async def test_room_closing_ends_the_job_with_room_closed() -> None:
    h = Harness()
    room = h.hub.room("room-1")
    room.add_participant("alice")
    h.start(make_spec())
    await h.running()
    await room.close()
    assert (await h.outcome()).end_reason == "room_closed"


async def test_lost_connection_ends_with_disconnected_and_reconnects_reach_the_reporter() -> None:
    h = Harness()
    room = h.hub.room("room-1")
    room.add_participant("alice")
    spec = make_spec()
    h.start(spec)
    await h.running()
    room.simulate_reconnect(spec.agent_identity)
    await settle()
    room.drop_agent(spec.agent_identity)
    outcome = await h.outcome()
    assert outcome.end_reason == "disconnected"
    assert h.reporter.states == [
        ("connecting", None), ("running", None), ("connecting", "reconnecting"),
        ("running", "reconnected"),
    ]


async def test_conversation_ending_on_its_own_ends_the_job_with_its_reason() -> None:
    h = Harness()
    h.hub.room("room-1").add_participant("alice")
    h.start(make_spec())
    await h.running()
    h.conversation.end("handoff")
    assert (await h.outcome()).end_reason == "conversation_ended:handoff"


async def test_conversation_crash_fails_the_job_and_still_leaves_the_room() -> None:
    class Crashing:
        def __init__(self, ctx: object) -> None: ...
        def push_audio(self, *a: object) -> None: ...
        def push_text(self, *a: object) -> None: ...
        def push_video(self, *a: object) -> None: ...
        def speaker_left(self, *a: object) -> None: ...
        def record(self) -> dict[str, object]:
            return {}

        async def run(self) -> str:
            raise RuntimeError("model exploded")

    h = Harness(conversation_factory=Crashing)
    room = h.hub.room("room-1")
    room.add_participant("alice")
    h.start(make_spec())
    with pytest.raises(JobFailed, match="conversation failed: RuntimeError: model exploded") as e:
        await h.outcome()
    assert e.value.record["end_reason"].startswith("failed: conversation failed")
    assert room.agent_identities == []


async def test_cancel_leaves_cleanly_reraises_and_leaves_no_task(tmp_path: object) -> None:
    h = Harness(config_overrides={"artifacts_dir": str(tmp_path)})
    before = task_snapshot()
    room = h.hub.room("room-1")
    alice = room.add_participant("alice")
    alice.publish_audio()
    heard_before = len(alice.received)
    task = h.start(make_spec())
    await h.running()
    assert room.agent_identities == ["ai-agent-AJ_test1"]
    assert len(alice.received) > heard_before
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert room.agent_identities == []
    assert room.agent_audio_track("ai-agent-AJ_test1") is None
    assert task_snapshot() == before
    record = json.loads((tmp_path / "AJ_test1.json").read_text())  # type: ignore[operator]
    assert record["end_reason"] == "cancelled"
    assert h.reporter.records["end_reason"] == "cancelled"


async def test_drain_deadline_cancels_and_the_participant_leaves_cleanly() -> None:
    h = Harness()
    before = task_snapshot()
    room = h.hub.room("room-1")
    room.add_participant("alice")
    # the service drains by cancelling the body at its deadline
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await h.body(make_spec(), h.reporter)
    assert room.agent_identities == []
    assert task_snapshot() == before


async def test_expired_garbled_and_wrong_room_tokens_fail_with_a_clear_reason() -> None:
    h = Harness()
    expired = make_token("room-1", "ai-agent-AJ_test1", ttl=-120)
    with pytest.raises(JobFailed, match="^token expired"):
        await h.body(make_spec(token=expired), h.reporter)
    with pytest.raises(JobFailed, match="^invalid token"):
        await h.body(make_spec(token="garbage.token.value"), h.reporter)
    other_room = make_token("room-2", "ai-agent-AJ_test1")
    with pytest.raises(JobFailed, match="grant is for room 'room-2'"):
        await h.body(make_spec(token=other_room), h.reporter)
    assert h.hub.get("room-1") is None or h.hub.room("room-1").agent_identities == []


async def test_local_rooms_are_refused_unless_enabled() -> None:
    h = Harness(config_overrides={"room": {"allow_local_rooms": False}})
    with pytest.raises(JobFailed, match="local:// rooms are disabled"):
        await h.body(make_spec(), h.reporter)
    with pytest.raises(JobFailed, match="unsupported server url scheme"):
        await h.body(make_spec(url="ftp://x"), h.reporter)


async def test_duplicate_identity_is_not_retried() -> None:
    h = Harness(config_overrides={"room": {"connect_attempts": 3, "connect_backoff": 5}})
    room = h.hub.room("room-1")
    room.add_participant("ai-agent-AJ_test1")
    with pytest.raises(JobFailed, match=r"duplicate identity .*attempt 1 of 3"):
        async with asyncio.timeout(2):
            await h.body(make_spec(), h.reporter)


class SlowPublishTransport(MemoryTransport):
    """Publishing the agent's track takes a while, as over a real network."""

    def __init__(self, *, hub: MemoryHub, published: asyncio.Event) -> None:
        super().__init__(hub=hub)
        self.connected = asyncio.Event()
        self._published = published

    async def publish_audio(self, *, sample_rate: int) -> TrackAudioOutput:
        self.connected.set()
        await self._published.wait()
        return await super().publish_audio(sample_rate=sample_rate)


async def test_audio_and_text_arriving_before_the_conversation_exists_are_not_lost() -> None:
    h = Harness()
    room = h.hub.room("room-1")
    alice = room.add_participant("alice")
    alice.publish_audio()
    release = asyncio.Event()
    transport = SlowPublishTransport(hub=h.hub, published=release)
    participant = AgentParticipant(
        spec=make_spec(), config=h.config, reporter=h.reporter,
        transport_factory=lambda: transport, conversation_factory=ListeningConversation,
    )
    convs: list[ListeningConversation] = []

    def factory(ctx: ConversationContext) -> ListeningConversation:
        convs.append(ListeningConversation(ctx))
        return convs[-1]

    participant._conversation_factory = factory
    task = asyncio.create_task(participant.run())
    async with asyncio.timeout(5):
        await transport.connected.wait()
    for i in range(30):
        alice.push_audio(tone_frame(i))
    alice.send_data(b'{"type":"user_text","data":"early"}')
    await settle()
    assert convs == []  # still publishing its track
    release.set()
    await h.running()
    await settle()
    assert convs[0].audio_frames.get("alice", 0) >= 25
    assert convs[0].text_turns == [("alice", "early")]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("video", [True, False])
async def test_video_reaches_the_conversation_only_when_enabled(video: bool) -> None:
    h = Harness(config_overrides={"room": {"video": video}})
    room = h.hub.room("room-1")
    alice, bob = room.add_participant("alice"), room.add_participant("bob")
    h.start(make_spec(job_type="JT_PUBLISHER", target="alice"))
    await h.running()
    frame = rtc.VideoFrame(4, 4, rtc.VideoBufferType.RGBA, bytes(4 * 4 * 4))
    alice.push_video(frame, source="screen_share")
    bob.push_video(frame)
    await settle()
    expected = {"alice/screen_share": 1} if video else {}
    assert h.conversation.video_frames == expected
    with pytest.raises(ValueError, match="unknown video source"):
        alice.push_video(frame, source="hologram")
    alice.leave()
    await h.outcome()
