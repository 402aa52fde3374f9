"""A conversation that also watches: wraps the job's conversation (normally the voice pipeline,
built with ``frames=``) and runs the standalone vision pipeline beside it.

Push methods go to the inner conversation (which forwards video to the frame store); ``run``
runs the inner conversation and, as a named task it owns, the vision pipeline. The job ends when
the inner conversation ends; the vision task is then cancelled and awaited, and the frame store
closed. A vision pipeline that can never run (``vision_unavailable``) is logged; the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from agents.io import Conversation, WrappedConversation
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline

log = structlog.get_logger("agents.vision")


class WatchingConversation(WrappedConversation):
    def __init__(
        self, *, inner: Conversation, frames: FrameStore, vision: VisionPipeline | None
    ) -> None:
        super().__init__(inner)
        self._frames = frames
        self._vision = vision
        self._vision_end: str | None = None

    def video_track_ended(self, speaker: str, source: str) -> None:
        """An unpublished camera is not described as a black image: its frames are dropped."""
        self._frames.drop_track(speaker, source)

    def speaker_left(self, speaker: str) -> None:
        self._frames.speaker_left(speaker)
        self._inner.speaker_left(speaker)

    async def run(self) -> str:
        task: asyncio.Task[None] | None = None
        if self._vision is not None:
            task = asyncio.get_running_loop().create_task(
                self._watch(self._vision), name="vision-pipeline"
            )
        try:
            return await self._inner.run()
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._frames.aclose()

    async def _watch(self, vision: VisionPipeline) -> None:
        self._vision_end = await vision.run()
        log.warning("vision_pipeline_ended", reason=self._vision_end)

    def record(self) -> dict[str, Any]:
        record = dict(self._inner.record())
        if self._vision is not None:
            record.update(self._vision.record())
            if self._vision_end is not None:
                record["vision"]["end_reason"] = self._vision_end
        else:
            record["vision"] = {"frames": self._frames.record()}
        return record
