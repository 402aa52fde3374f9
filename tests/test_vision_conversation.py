"""WatchingConversation: the voice pipeline and the vision pipeline as one job conversation."""

from __future__ import annotations

import asyncio

import pytest
from pipeline_kit import AGENT, USER, make_kit
from vision_fakes import RED, FakeVisionLLM, frame, image, metrics

from agents.providers.errors import ProviderUnavailable
from agents.vision.config import VisionConfig
from agents.vision.conversation import WatchingConversation
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline


def build(llm: FakeVisionLLM) -> tuple[WatchingConversation, FrameStore, object]:
    cfg = VisionConfig(min_interval_s=0.0)
    m = metrics()
    frames = FrameStore(config=cfg, metrics=m)
    kit = make_kit(frames=frames)
    vision = VisionPipeline(frames=frames, llm=llm, messages=kit.msgs, config=cfg,
                            speech=kit.pipeline, metrics=m)
    return WatchingConversation(inner=kit.pipeline, frames=frames, vision=vision), frames, kit


def vision_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks()
            if t.get_name() in ("vision-pipeline", "vision-frame-convert") and not t.done()]


async def test_frames_pushed_to_the_job_are_described_and_spoken() -> None:
    conv, frames, kit = build(FakeVisionLLM(answer="The lights went red."))
    task = asyncio.create_task(conv.run(), name="test-conversation")
    await kit.status("listening")  # type: ignore[attr-defined]
    conv.push_video(USER, "camera", frame(image(RED)))
    final = await kit.agent_final()  # type: ignore[attr-defined]
    assert (final.text, final.participant_id) == ("The lights went red.", AGENT)
    record = conv.record()
    assert record["vision"]["decisions"]["described"] == 1
    assert record["vision"]["frames"][f"{USER}/camera"]["converted"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert vision_tasks() == []
    assert frames.samples() == []  # closed


async def test_an_unavailable_vision_model_does_not_end_the_call() -> None:
    llm = FakeVisionLLM()
    llm.error = ProviderUnavailable("no model", provider="fake")
    conv, _frames, kit = build(llm)
    task = asyncio.create_task(conv.run(), name="test-conversation")
    await kit.status("listening")  # type: ignore[attr-defined]
    conv.push_video(USER, "camera", frame(image(RED)))
    [watcher] = [t for t in asyncio.all_tasks() if t.get_name() == "vision-pipeline"]
    await asyncio.wait_for(asyncio.shield(watcher), 5)  # the vision side ends on its own
    assert conv.record()["vision"]["end_reason"] == "vision_unavailable"
    assert not task.done()
    conv.push_text(USER, "hello?")
    await kit.agent_final()  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert vision_tasks() == []
