"""Data messages through the room, the job record and artifact, and the agent's audio track."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from room_kit import Harness, make_spec, settle, tone_frame

from agents import messages as m
from agents.entry import ListeningConversation
from agents.messages import TodoItem
from agents.participant import ConversationContext


class Talkative(ListeningConversation):
    """Publishes one of every outbound message type, then waits."""

    def __init__(self, ctx: ConversationContext) -> None:
        super().__init__(ctx)
        self.ctx = ctx
        self.published = asyncio.Event()

    async def run(self) -> str:
        await self.announce()
        me = self.ctx.agent_identity
        out = self.ctx.messages
        await out.publish(m.transcript_chunk(text="hel", is_final=False, participant_id="alice",
                                             transcript_id="T1"))
        await out.publish(m.transcript_chunk(text="hello", is_final=True, participant_id="alice",
                                             transcript_id="T1", confidence=0.9))
        await out.publish(m.transcript_chunk(text="Hi there!", is_final=True, participant_id=me,
                                             transcript_id="T2"))
        await out.publish(m.agent_status("thinking"))
        await out.publish(m.agent_status("speaking", "answering"))
        await out.publish(m.todo_list([TodoItem(id="1", description="Ask name",
                                                status="completed", required=True)]))
        await out.publish(m.agent_metrics(turn_id="turn-1", stages={"stt": 120.0, "llm": 300.0}))
        await out.publish(m.handoff(reason="asked for a human", summary="wants a refund"))
        await out.publish(m.vision_description(description="a cat", participant_id="alice",
                                               track_source="camera"))
        self.published.set()
        return await self.wait_end()


async def test_every_outbound_message_type_reaches_clients_as_they_parse_it(
    tmp_path: Path,
) -> None:
    h = Harness(conversation_factory=Talkative, config_overrides={"artifacts_dir": str(tmp_path)})
    alice = h.hub.room("room-1").add_participant("alice")
    h.start(make_spec())
    await h.running()
    async with asyncio.timeout(5):
        await h.conversation.published.wait()
    await settle()
    # the agent re-sends its current status and todo list (exact copies) once someone hears it
    first_copies: list[bytes] = []
    for r in alice.received:
        if r.payload not in first_copies or r.topic not in ("agent_status", "todo_list"):
            first_copies.append(r.payload)
    types = [json.loads(p)["type"] for p in first_copies]
    assert types == ["agent_status", "todo_list", "transcript_chunk", "transcript_chunk",
                     "transcript_chunk", "agent_status", "agent_status", "todo_list",
                     "agent_metrics", "handoff", "vision_description"]
    for raw in alice.received:
        wire = json.loads(raw.payload)
        assert wire["type"] == raw.topic  # topic equals type
        assert m.parse_outbound(raw.payload).type == raw.topic
    first = json.loads(alice.received[0].payload)
    assert first == {"type": "agent_status", "data": {"status": "listening"}}
    chunk = json.loads(alice.received[3].payload)["data"]
    assert set(chunk) == {"text", "is_final", "confidence", "timestamp", "participant_id",
                          "chunk_id", "transcript_id"}
    assert chunk["timestamp"].endswith("Z")

    h.conversation.end("handoff")
    outcome = await h.outcome()
    rec = outcome.record
    # finals only, both sides, with speakers and timestamps
    assert [(t["participant_id"], t["role"], t["text"]) for t in rec["transcript"]] == [
        ("alice", "user", "hello"), ("ai-agent-AJ_test1", "agent", "Hi there!"),
    ]
    assert rec["todo_list"] == [{"id": "1", "description": "Ask name", "status": "completed",
                                 "required": True}]
    assert rec["handoff"]["reason"] == "asked for a human"
    assert rec["metrics"][0]["stages"] == {"stt": 120.0, "llm": 300.0}
    assert rec["end_reason"] == "conversation_ended:handoff"
    assert {"connected_ms", "running_ms", "ended_ms"} <= set(rec["timings"])
    on_disk = json.loads((tmp_path / "AJ_test1.json").read_text())
    assert on_disk["transcript"] == rec["transcript"]
    assert rec["artifact"] == str(tmp_path / "AJ_test1.json")


async def test_user_text_becomes_a_turn_and_bad_inbound_data_is_ignored() -> None:
    h = Harness()
    alice = h.hub.room("room-1").add_participant("alice")
    h.start(make_spec())
    await h.running()
    bad = [
        b"{not json", b"\xff\xfe", b"[1,2]", b'{"type":"shout","data":"x"}',
        b'{"type":"user_text","data":""}', b'{"type":"user_text","data":"   "}',
        b'{"type":"user_text","data":42}', b'{"type":"user_text","data":"' + b"a" * 20000 + b'"}',
    ]
    for payload in bad:
        alice.send_data(payload, topic="user_text")
    alice.send_data(json.dumps({"type": "user_text", "data": "what's the weather?"}))
    await settle()
    assert h.conversation.text_turns == [("alice", "what's the weather?")]
    assert not h.task.done()  # type: ignore[union-attr]  # the job goes on
    alice.leave()
    rec = (await h.outcome()).record
    assert rec["counters"]["inbound_ignored"] == len(bad)
    assert [(t["participant_id"], t["source"], t["text"]) for t in rec["transcript"]] == [
        ("alice", "text", "what's the weather?")
    ]


async def test_text_from_someone_the_job_does_not_serve_is_ignored() -> None:
    h = Harness()
    room = h.hub.room("room-1")
    alice, bob = room.add_participant("alice"), room.add_participant("bob")
    h.start(make_spec(job_type="JT_PUBLISHER", target="alice"))
    await h.running()
    bob.send_data(b'{"type":"user_text","data":"I am not the target"}')
    alice.send_data(b'{"type":"user_text","data":"I am"}')
    await settle()
    assert h.conversation.text_turns == [("alice", "I am")]
    alice.leave()
    await h.outcome()


async def test_join_announces_status_and_the_todo_list_from_config_and_metadata() -> None:
    persona = {"todo_items": [{"id": "c1", "description": "from config"}]}
    h = Harness(config_overrides={"persona": persona})
    alice = h.hub.room("room-1").add_participant("alice")
    h.start(make_spec(metadata=json.dumps({
        "todo_items": [{"id": "m1", "description": "from metadata", "required": True}],
        "api_key": "must be ignored",
    })))
    await h.running()
    async with asyncio.timeout(5):
        todo = await alice.wait_for_message("todo_list")
    assert isinstance(todo, m.TodoList)
    assert [(i.id, i.required) for i in todo.data.items] == [("m1", True)]
    assert h.contexts[0].overrides == {"todo_items": [
        {"id": "m1", "description": "from metadata", "status": "pending", "required": True}
    ]}
    status = await alice.wait_for_message("agent_status")
    assert isinstance(status, m.AgentStatus) and status.data.status == "listening"
    alice.leave()
    rec = (await h.outcome()).record
    assert rec["todo_list"][0]["id"] == "m1"


class Speaker(ListeningConversation):
    output_sample_rate = 24000  # it speaks: its track is published as the job starts

    def __init__(self, ctx: ConversationContext) -> None:
        super().__init__(ctx)
        self.ctx = ctx


class Listener(ListeningConversation):
    """Declares no output rate (no text-to-speech): its track is published at a first frame."""

    def __init__(self, ctx: ConversationContext) -> None:
        super().__init__(ctx)
        self.ctx = ctx


async def test_agent_audio_is_published_and_clear_queue_drops_what_is_queued() -> None:
    h = Harness(conversation_factory=Speaker)
    alice = h.hub.room("room-1").add_participant("alice")
    spec = make_spec()
    h.start(spec)
    await h.running()
    audio: Any = h.conversation.ctx.audio
    assert audio.sample_rate == 24000
    heard = alice.listen_to(spec.agent_identity)
    for i in range(10):
        await audio.capture_frame(tone_frame(i, rate=24000))
    await audio.wait_for_playout()
    async with asyncio.timeout(3):
        await heard.wait_for_voiced(8)
    spoken = heard.voiced_frames
    # barge-in: queue 400 ms, clear at once
    for i in range(40):
        await audio.capture_frame(tone_frame(i, rate=24000))
    assert audio.queued_duration > 0.2
    audio.clear_queue()
    assert audio.queued_duration == 0.0
    async with asyncio.timeout(1):
        await audio.wait_for_playout()  # returns at once after a clear
    await asyncio.sleep(0.6)  # longer than the 400 ms that were queued
    assert heard.voiced_frames - spoken < 40
    with pytest.raises(ValueError, match="expected mono 24000 Hz"):
        await audio.capture_frame(tone_frame(0, rate=48000))
    alice.leave()
    await h.outcome()
    await alice.aclose()


async def test_a_job_that_never_speaks_publishes_nothing_until_a_frame_comes() -> None:
    from agents.agent_state import AGENT_STATE
    from agents.transport.lazy_audio import LazyAudioOutput

    h = Harness(conversation_factory=Listener)
    room = h.hub.room("room-1")
    alice = room.add_participant("alice")
    spec = make_spec()
    h.start(spec)
    await h.running()
    # Announced by its state attribute, not by a (silent, costly) track.
    async with asyncio.timeout(2):
        await room.wait_for_agent_attribute(spec.agent_identity, AGENT_STATE, "listening")
    assert room.agent_audio_track(spec.agent_identity) is None
    audio: Any = h.conversation.ctx.audio
    assert isinstance(audio, LazyAudioOutput) and audio.published is None
    assert audio.queued_duration == 0.0
    audio.clear_queue()
    await audio.wait_for_playout()  # nothing published: returns at once
    with pytest.raises(ValueError, match="expected mono 24000 Hz"):
        await audio.capture_frame(tone_frame(0, rate=48000))
    assert room.agent_audio_track(spec.agent_identity) is None  # a refused frame publishes nothing
    # Frames arriving together wait for one publication.
    await asyncio.gather(*(audio.capture_frame(tone_frame(i, rate=24000)) for i in range(3)))
    track = room.agent_audio_track(spec.agent_identity)
    assert track is not None and audio.published is not None
    heard = alice.listen_to(spec.agent_identity)
    for i in range(10):
        await audio.capture_frame(tone_frame(i, rate=24000))
    assert room.agent_audio_track(spec.agent_identity) is track  # published once
    await audio.wait_for_playout()
    async with asyncio.timeout(3):
        await heard.wait_for_voiced(5)
    alice.leave()
    await h.outcome()
    await alice.aclose()


async def test_a_failed_publication_reaches_the_frame_and_the_next_frame_tries_again() -> None:
    from agents.transport.base import TransportError
    from agents.transport.lazy_audio import LazyAudioOutput

    tries: list[int] = []

    class Track:
        frames = 0

        async def capture_frame(self, frame: Any) -> None:
            self.frames += 1

    track = Track()

    async def publish() -> Any:
        tries.append(1)
        if len(tries) == 1:
            raise TransportError("publish audio failed: timeout", retryable=True)
        return track

    out = LazyAudioOutput(publish=publish, sample_rate=24000)
    with pytest.raises(TransportError, match="publish audio failed"):
        await out.capture_frame(tone_frame(0, rate=24000))
    assert out.published is None
    await out.capture_frame(tone_frame(1, rate=24000))
    await out.capture_frame(tone_frame(2, rate=24000))
    assert len(tries) == 2 and out.published is track and track.frames == 2


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ('{"todo_items": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested deeper"),
        ('{"todo_items": [[[[[[[[[["x"]]]]]]]]]]}', "nested deeper"),
        ('{"greeting": "hi", "n": ' + "9" * 5000 + "}", "not parseable"),
        ('{"greeting": "' + "x" * 70_000 + '"}', "longer than"),
    ],
    ids=["10000-deep", "10-deep", "5000-digits", "70k-chars"],
)
async def test_metadata_that_cannot_be_read_is_ignored_with_a_warning_in_the_record(
    metadata: str, problem: str
) -> None:
    h = Harness()
    alice = h.hub.room("room-1").add_participant("alice")
    h.start(make_spec(metadata=metadata))
    await h.running()
    assert h.contexts[0].overrides == {}
    alice.leave()
    outcome = await h.outcome()
    assert outcome.end_reason == "room_empty"  # ended normally, not failed
    (warning,) = outcome.record["warnings"]
    assert warning.startswith("metadata overrides ignored: ") and problem in warning
