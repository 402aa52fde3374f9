"""The vision path in the in-memory room: a participant's camera frames become a published
``vision_description``; a participant the job does not listen to is never looked at."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from room_kit import Harness, make_spec
from vision_fakes import GREEN, RED, FakeVisionLLM, frame, image, metrics

from agents.messages import VisionDescription
from agents.participant import ConversationContext
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline


class VisionOnly:
    """A conversation that only watches: frames into a FrameStore, descriptions published."""

    def __init__(self, ctx: ConversationContext) -> None:
        cfg = VisionConfig(fps=5.0, min_interval_s=0.0, pipeline=["visionllm", "return"])
        m = metrics()
        self.llm = FakeVisionLLM(answer="A red card is held up.")
        self.frames = FrameStore(config=cfg, metrics=m)
        self.vision = VisionPipeline(frames=self.frames, llm=self.llm, messages=ctx.messages,
                                     config=cfg, metrics=m)

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        pass

    def push_text(self, speaker: str, text: str) -> None:
        pass

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        self.frames.push_video(speaker, source, frame)

    def speaker_left(self, speaker: str) -> None:
        self.frames.speaker_left(speaker)

    async def run(self) -> str:
        try:
            return await self.vision.run()
        finally:
            await self.frames.aclose()

    def record(self) -> dict[str, Any]:
        return self.vision.record()


async def test_camera_frames_in_the_room_become_a_published_description() -> None:
    h = Harness(config_overrides={"room": {"video": True}}, conversation_factory=VisionOnly)
    room = h.hub.room("room-1")
    alice, bob = room.add_participant("alice"), room.add_participant("bob")
    h.start(make_spec(job_type="JT_PUBLISHER", target="alice"))
    await h.running()
    conv: VisionOnly = h.conversation
    bob.push_video(frame(image(GREEN, 640, 360)))
    alice.push_video(frame(image(RED, 640, 360)))
    async with asyncio.timeout(5):
        got = await alice.wait_for_message("vision_description")
    assert isinstance(got, VisionDescription)
    assert got.data.description == "A red card is held up."
    assert (got.data.participant_id, got.data.track_source) == ("alice", "camera")
    assert [s.speaker for s in conv.frames.samples()] == ["alice"]  # bob is never looked at
    assert len(conv.llm.requests) == 1
    alice.leave()
    await h.outcome()
