"""The agent as the service runs it: the configured pipelines behind the participant, the
track at the speech engine's rate, vision beside voice when enabled, the pipelines' metrics in
the service's ``/metrics``. Providers are fakes subclassing the real bases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import make_settings
from fakes import FakeAudioOutput, FakeLLM, FakeMessageOutput, FakeSTT, FakeTTS, FakeVAD
from room_kit import RecordingReporter, make_spec
from vision_fakes import FakeVisionLLM

from agents.config import AgentConfig
from agents.conversation import AgentConversations
from agents.entry import ListeningConversation, make_job_body
from agents.messages import TranscriptChunk
from agents.participant import ConversationContext
from agents.pipeline.registry import ProviderRegistry
from agents.pipeline.voice import VoicePipeline
from agents.transport.memory import MemoryHub
from agents.vision.conversation import WatchingConversation


def agent_config(*, vision: bool = False) -> AgentConfig:
    return AgentConfig.model_validate({
        "room": {"allow_local_rooms": True, "noise_suppression": False},
        "persona": {"instructions": "Be brief."},
        "pipeline": {"vision": {"enabled": vision}},
    })


def fake_registry(config: AgentConfig, *, tts_rate: int) -> tuple[ProviderRegistry, FakeLLM]:
    llm = FakeLLM(default="Hello from the pipeline.")
    prebuilt: dict[str, Any] = {
        "silero": FakeVAD(), "moonshine": FakeSTT(), "scripted-intake": llm,
        "piper": FakeTTS(rate=tts_rate), "embedded-vision": FakeVisionLLM(),
    }
    return ProviderRegistry(config=config.pipeline, prebuilt=prebuilt), llm


async def test_a_text_turn_in_a_local_room_is_answered_by_the_configured_pipeline() -> None:
    config = agent_config()
    registry, llm = fake_registry(config, tts_rate=22050)
    conversations = AgentConversations(config, registry=registry)
    hub = MemoryHub()
    body = make_job_body(config, hub=hub, conversation_factory=conversations)
    room = hub.room("room-1")
    user = room.add_participant("user-1")
    task = asyncio.create_task(body(make_spec(), RecordingReporter()), name="test.job")
    try:
        async with asyncio.timeout(5):
            await user.wait_for_message("agent_status")
            user.send_data(b'{"type":"user_text","data":"hi there"}')
            reply = await user.wait_for_message(
                "transcript_chunk",
                where=lambda m: m.data.is_final and m.data.participant_id != "user-1",
            )
        assert isinstance(reply, TranscriptChunk)
        assert reply.data.text == "Hello from the pipeline."
        assert llm.requests[0].messages[0].content.startswith("Be brief.")
        track = room.agent_audio_track("ai-agent-AJ_test1")
        assert track is not None
        # The agent's track is published at the speech engine's rate, not a fixed one.
        assert conversations.output_sample_rate == 22050
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await body.aclose()


async def test_vision_enabled_runs_a_watching_conversation_and_subscribes_video() -> None:
    config = agent_config(vision=True)
    assert config.wants_video
    registry, _ = fake_registry(config, tts_rate=16000)
    conversations = AgentConversations(config, registry=registry)
    ctx = ConversationContext(
        spec=make_spec(), config=config, persona=config.persona, overrides={},
        audio=FakeAudioOutput(sample_rate=16000), messages=FakeMessageOutput(),
        agent_identity="ai-agent-AJ_test1",
    )
    assert isinstance(conversations(ctx), WatchingConversation)
    plain = AgentConversations(agent_config(), registry=fake_registry(agent_config(),
                                                                       tts_rate=16000)[0])
    assert isinstance(plain(ctx), VoicePipeline)
    await conversations.aclose()
    await plain.aclose()


async def test_metrics_endpoint_includes_the_pipeline_series(make_app: Any) -> None:
    settings = make_settings(dev_mode=True)
    body = make_job_body(settings.agent, hub=MemoryHub(),
                         conversation_factory=ListeningConversation)
    h = await make_app(settings, body)
    text = (await h.client.get("/metrics")).text
    assert "external_agent_" in text  # the service's own series
    assert "agent_turn_stage_seconds" in text  # the voice pipeline's latency histogram


class Inner(ListeningConversation):
    """Has every optional call a wrapper must pass on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def busy(self) -> bool:
        return True

    def audio_gap(self, speaker: str, ms: float) -> None:
        self.calls.append(("gap", speaker, ms))

    def video_track_ended(self, speaker: str, source: str) -> None:
        self.calls.append(("ended", speaker, source))


def test_wrapping_conversations_pass_the_optional_calls_on() -> None:
    from agents.io import is_busy
    from agents.tooling import ToolingConversation

    inner = Inner()
    # As the MCP wrapper holds the vision one, which holds the voice pipeline: calls reach in.
    outer = ToolingConversation(inner=inner, tools=None)  # type: ignore[arg-type]
    assert is_busy(outer)
    outer.audio_gap("alice", 90.0)
    outer.video_track_ended("alice", "camera")
    assert inner.calls == [("gap", "alice", 90.0), ("ended", "alice", "camera")]
    assert not is_busy(ListeningConversation())  # no busy(): never busy
