"""Pump one subscribed video track into a conversation's ``push_video``.

For the room transport: on ``track_subscribed`` of a camera or screen-share track of a target
participant, start a :class:`VideoTrackPump`; on unsubscribe, unpublish or leave, ``aclose`` it.
Frames arrive as the SDK decodes them (I420 normally); the pump hands each one over untouched
and the :class:`~agents.vision.frames.FrameStore` decides what to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog
from livekit import rtc

log = structlog.get_logger("agents.vision")


class VideoSink(Protocol):
    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None: ...


def source_name(source: rtc.TrackSource.ValueType) -> str | None:
    """``camera`` / ``screen_share`` for a video track's ``TrackSource``; ``None`` otherwise."""
    if source == rtc.TrackSource.SOURCE_CAMERA:
        return "camera"
    if source == rtc.TrackSource.SOURCE_SCREENSHARE:
        return "screen_share"
    return None


class VideoTrackPump:
    """Owns an ``rtc.VideoStream`` of ``track`` and the task that reads it."""

    def __init__(
        self, *, track: rtc.Track, speaker: str, source: str, sink: VideoSink, capacity: int = 2
    ) -> None:
        if source not in ("camera", "screen_share"):
            raise ValueError(f"unknown video source {source!r}")
        self.speaker = speaker
        self.source = source
        self.frames = 0
        self._sink = sink
        # A small buffer: the SDK drops the oldest frames when the reader falls behind.
        self._stream = rtc.VideoStream(track, capacity=capacity)
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._pump(), name=f"vision-pump-{speaker}-{source}"
        )

    async def _pump(self) -> None:
        try:
            async for event in self._stream:
                self.frames += 1
                try:
                    self._sink.push_video(self.speaker, self.source, event.frame)
                except ValueError as e:
                    log.warning(
                        "vision_frame_rejected", speaker=self.speaker, source=self.source,
                        error=str(e),
                    )
        finally:
            log.debug("vision_pump_ended", speaker=self.speaker, source=self.source,
                      frames=self.frames)

    async def aclose(self) -> None:
        """Stop reading and close the stream. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._stream.aclose()
