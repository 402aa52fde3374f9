"""VisionPipeline: change detection, rate limit, busy, latest-only under a slow model, traces."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from vision_fakes import (
    BLUE,
    GREEN,
    RED,
    FakeClock,
    FakeSpeech,
    FakeVisionLLM,
    RecordingMessages,
    frame,
    image,
    mean_colour,
    metrics,
)

from agents.messages import AgentMetrics, VisionDescription
from agents.providers.base import ChatRequest
from agents.providers.errors import ProviderStatusError, ProviderUnavailable
from agents.vision.change import difference, thumbnail
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline


class Rig:
    def __init__(self, **cfg: object) -> None:
        self.clock = FakeClock()
        self.config = VisionConfig.model_validate({"fps": 5.0, "min_interval_s": 10.0, **cfg})
        m = metrics()
        self.frames = FrameStore(config=self.config, clock=self.clock, metrics=m)
        self.llm = FakeVisionLLM(answer="A red wall appeared.")
        self.speech = FakeSpeech()
        self.messages = RecordingMessages()
        self.pipeline = VisionPipeline(
            frames=self.frames, llm=self.llm, messages=self.messages, config=self.config,
            speech=self.speech, clock=self.clock, metrics=m,
        )

    async def show(self, colour: tuple[int, int, int], *, source: str = "camera",
                   speaker: str = "alice") -> None:
        self.frames.push_video(speaker, source, frame(image(colour, 320, 180)))
        await self.frames.drain()

    def descriptions(self) -> list[VisionDescription]:
        return [m for m in self.messages.sent if isinstance(m, VisionDescription)]


def request_colour(request: ChatRequest) -> tuple[float, float, float]:
    return mean_colour(request.messages[-1].images[0].jpeg)


def test_difference_is_zero_for_equal_images_and_one_for_black_against_white() -> None:
    black, white = thumbnail(image((0, 0, 0), 64, 48)), thumbnail(image((255, 255, 255), 64, 48))
    assert difference(black, black) == 0.0
    assert difference(black, white) == pytest.approx(1.0)
    assert difference(black, None) == 1.0
    assert difference(black, thumbnail(image((0, 0, 0), 48, 64))) == 1.0


async def test_a_changed_frame_is_described_published_spoken_and_traced() -> None:
    rig = Rig()
    await rig.show(RED)
    assert await rig.pipeline.check_once() == "described"

    [desc] = rig.descriptions()
    assert desc.data.description == "A red wall appeared."
    assert (desc.data.participant_id, desc.data.track_source) == ("alice", "camera")
    assert rig.speech.said == [("A red wall appeared.", "vision")]
    [trace] = [m for m in rig.messages.sent if isinstance(m, AgentMetrics)]
    assert trace.data.kind == "vision" and not trace.data.interrupted
    stages = trace.data.stages
    order = ["encoded", "model_request", "first_token", "model_done", "published", "spoken"]
    assert list(stages) == order
    assert all(stages[a] <= stages[b] for a, b in zip(order, order[1:], strict=False))
    [request] = rig.llm.requests
    assert request.messages[0].role == "system"
    assert request.messages[0].content == rig.config.describe_prompt
    assert request.messages[-1].images[0].source == "camera"
    assert request_colour(request)[0] > 180
    await rig.frames.aclose()


async def test_an_unchanged_frame_is_not_described_again() -> None:
    rig = Rig(min_interval_s=0.0)
    await rig.show(RED)
    assert await rig.pipeline.check_once() == "described"
    rig.clock.advance(1.0)
    await rig.show(RED)
    assert await rig.pipeline.check_once() is None  # the only track is unchanged
    assert rig.pipeline.record()["vision"]["decisions"] == {"described": 1, "unchanged": 1}
    assert len(rig.llm.requests) == 1
    assert await rig.pipeline.check_once() is None  # nothing new at all
    await rig.frames.aclose()


async def test_rate_limit_holds_then_the_pending_change_is_described() -> None:
    rig = Rig(min_interval_s=10.0)
    await rig.show(RED)
    assert await rig.pipeline.check_once() == "described"
    for colour in (GREEN, BLUE):
        rig.clock.advance(3.0)
        await rig.show(colour)
        assert await rig.pipeline.check_once() == "rate_limited"
    assert len(rig.llm.requests) == 1
    rig.clock.advance(4.5)  # 10.5 s after the first description; no new frame needed
    assert await rig.pipeline.check_once() == "described"
    assert len(rig.llm.requests) == 2
    assert request_colour(rig.llm.requests[1])[2] > 180  # the newest image, blue
    await rig.frames.aclose()


async def test_nothing_is_described_while_someone_speaks() -> None:
    rig = Rig()
    rig.speech.is_busy = True
    await rig.show(RED)
    assert await rig.pipeline.check_once() == "busy"
    assert await rig.pipeline.check_once() == "busy"
    assert rig.llm.requests == [] and rig.messages.sent == []
    rig.speech.is_busy = False
    assert await rig.pipeline.check_once() == "described"
    await rig.frames.aclose()


@pytest.mark.parametrize("steps", [["visionllm"], ["visionllm", "return"]])
async def test_pipeline_without_tts_publishes_without_speaking(steps: list[str]) -> None:
    rig = Rig(pipeline=steps)
    await rig.show(RED)
    assert await rig.pipeline.check_once() == "described"
    assert len(rig.descriptions()) == 1 and rig.speech.said == []
    assert rig.pipeline.turns[0].spoken is None
    await rig.frames.aclose()


async def test_a_model_error_is_counted_and_the_pipeline_goes_on() -> None:
    rig = Rig(min_interval_s=1.0)
    rig.llm.error = ProviderStatusError("bad gateway", status_code=502, provider="fake")
    await rig.show(RED)
    assert await rig.pipeline.check_once() == "failed"
    assert rig.messages.sent == []
    rig.llm.error = None
    rig.clock.advance(0.5)
    assert await rig.pipeline.check_once() == "rate_limited"
    rig.clock.advance(1.0)  # no new frame: the failed change is retried on its own
    assert await rig.pipeline.check_once() == "described"
    assert rig.pipeline.record()["vision"]["decisions"] == {
        "failed": 1, "rate_limited": 1, "described": 1
    }
    await rig.frames.aclose()


async def test_slow_model_sees_only_the_latest_frame_no_backlog() -> None:
    rig = Rig(min_interval_s=0.0, fps=30.0)
    rig.llm.gate = asyncio.Event()
    runner = asyncio.create_task(rig.pipeline.run(), name="test-vision-run")
    try:
        await rig.show(RED)
        await asyncio.wait_for(rig.llm.started.wait(), 5)  # first description, held
        for colour in (GREEN, RED, GREEN, BLUE):
            rig.clock.advance(0.5)
            await rig.show(colour)
        rig.llm.gate.set()
        await asyncio.wait_for(rig.messages.wait_count("vision_description", 2), 5)
        assert len(rig.llm.requests) == 2
        assert request_colour(rig.llm.requests[0])[0] > 180  # red
        assert request_colour(rig.llm.requests[1])[2] > 180  # blue: the latest only
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await rig.frames.aclose()


async def test_run_ends_when_the_model_can_never_run() -> None:
    rig = Rig()
    rig.llm.error = ProviderUnavailable("no model file", provider="fake")
    runner = asyncio.create_task(rig.pipeline.run(), name="test-vision-run")
    await rig.show(RED)
    assert await asyncio.wait_for(runner, 5) == "vision_unavailable"
    await rig.frames.aclose()


async def test_interrupted_speech_is_marked_in_the_trace() -> None:
    rig = Rig()
    rig.speech.result = False
    await rig.show(RED)
    await rig.pipeline.check_once()
    [trace] = [m for m in rig.messages.sent if isinstance(m, AgentMetrics)]
    assert trace.data.interrupted
    await rig.frames.aclose()


async def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValidationError, match="vision pipeline must be"):
        VisionConfig.model_validate({"pipeline": ["tts", "visionllm"]})
    with pytest.raises(ValidationError):
        VisionConfig.model_validate({"fps": 0})
    cfg = VisionConfig()
    frames = FrameStore(config=cfg, metrics=metrics())
    blind = FakeVisionLLM()
    blind.supports_vision = False
    with pytest.raises(ValueError, match="vision-capable"):
        VisionPipeline(frames=frames, llm=blind, messages=RecordingMessages(), config=cfg,
                       speech=FakeSpeech())
    with pytest.raises(ValueError, match="no speech output"):
        VisionPipeline(frames=frames, llm=FakeVisionLLM(), messages=RecordingMessages(),
                       config=cfg)
    await frames.aclose()
