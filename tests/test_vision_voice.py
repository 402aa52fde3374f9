"""Frames through the voice pipeline: attached to a voice turn's model request, and spoken
descriptions of the vision pipeline through the voice pipeline's ``say``."""

from __future__ import annotations

import asyncio

from fakes import FakeLLM
from pipeline_kit import AGENT, USER, make_kit, running
from vision_fakes import BLUE, RED, FakeVisionLLM, frame, image, metrics, text_image

from agents.messages import VisionDescription
from agents.providers.embedded_vision import EmbeddedVisionLLM
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline


async def test_a_voice_turn_carries_the_speakers_latest_camera_and_screen_images() -> None:
    async with FrameStore(config=VisionConfig(fps=30.0), metrics=metrics()) as frames:
        kit = make_kit(llm=FakeLLM(vision=True), frames=frames)
        async with running(kit):
            kit.pipeline.push_video(USER, "camera", frame(image(RED)))
            kit.pipeline.push_video(USER, "screen_share", frame(image(BLUE)))
            await frames.drain()
            kit.pipeline.push_text(USER, "what do you see?")
            await kit.agent_final()
        cam, screen = frames.latest(USER, "camera"), frames.latest(USER, "screen_share")
    user = [m for m in kit.llm.requests[0].messages if m.role == "user"][-1]
    assert cam is not None and screen is not None
    assert user.images == (cam.image, screen.image)
    assert [i.source for i in user.images] == ["camera", "screen_share"]
    assert max(i.width for i in user.images) == 512


async def test_the_embedded_model_answers_a_voice_turn_from_the_camera_text() -> None:
    async with FrameStore(config=VisionConfig(), metrics=metrics()) as frames:
        kit = make_kit(llm=EmbeddedVisionLLM(), frames=frames)  # type: ignore[arg-type]
        async with running(kit):
            kit.pipeline.push_video(USER, "camera", frame(text_image("EXIT")))
            await frames.drain()
            kit.pipeline.push_text(USER, "What does the sign say?")
            final = await kit.agent_final()
    assert "EXIT" in final.text


async def test_vision_descriptions_are_spoken_by_the_voice_pipeline() -> None:
    cfg = VisionConfig(min_interval_s=0.0)
    m = metrics()
    async with FrameStore(config=cfg, metrics=m) as frames:
        kit = make_kit(frames=frames)
        llm = FakeVisionLLM(answer="Someone switched on a red light.")
        vision = VisionPipeline(frames=frames, llm=llm, messages=kit.msgs, config=cfg,
                                speech=kit.pipeline, metrics=m)
        async with running(kit):
            runner = asyncio.create_task(vision.run(), name="test-vision-run")
            try:
                kit.pipeline.push_video(USER, "camera", frame(image(RED)))
                final = await kit.agent_final()
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
    assert final.text == "Someone switched on a red light."
    assert final.participant_id == AGENT
    [desc] = [x for x in kit.msgs.messages if isinstance(x, VisionDescription)]
    assert desc.data.participant_id == USER
    assert vision.turns[0].spoken is True
