"""The agent's audio track, published when the agent first speaks.

A published ``rtc.AudioSource`` costs CPU while nobody speaks into it: the SDK feeds the track
silence every 10 ms and WebRTC's audio encoder encodes it (measured: about 0.03 of a core per
job, more than half of what a listening job costs in ``bench/bench_room_density.py``). A job
whose pipelines never speak (no text-to-speech: transcription only) therefore publishes no track
up front; if it does speak after all (a path that was not foreseen), the track is published at
its first frame, which then waits for the publication once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from livekit import rtc

from agents.io import AudioOutput
from agents.transport.base import RoomTransport, TrackAudioOutput


async def agent_audio(transport: RoomTransport, *, sample_rate: int,
                      at_start: bool) -> AudioOutput:
    """The job's audio output: its track published now (``at_start``), or at a first frame."""
    if at_start:
        return await transport.publish_audio(sample_rate=sample_rate)
    return LazyAudioOutput(publish=lambda: transport.publish_audio(sample_rate=sample_rate),
                           sample_rate=sample_rate)


class LazyAudioOutput:
    """An :class:`agents.io.AudioOutput` that publishes its track on the first frame."""

    def __init__(self, *, publish: Callable[[], Awaitable[TrackAudioOutput]],
                 sample_rate: int) -> None:
        self._publish = publish
        self._sample_rate = sample_rate
        self._track: TrackAudioOutput | None = None
        self._lock = asyncio.Lock()

    @property
    def published(self) -> TrackAudioOutput | None:
        """The track, once published."""
        return self._track

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    async def _ensure(self) -> TrackAudioOutput:
        if self._track is None:
            async with self._lock:  # concurrent first frames publish once
                if self._track is None:
                    # A TransportError propagates to the speaker, like a failed capture; the
                    # next frame tries again.
                    self._track = await self._publish()
        return self._track

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if frame.sample_rate != self._sample_rate or frame.num_channels != 1:
            raise ValueError(
                f"expected mono {self._sample_rate} Hz frames, got "
                f"{frame.num_channels} ch {frame.sample_rate} Hz"
            )
        await (await self._ensure()).capture_frame(frame)

    def clear_queue(self) -> None:
        if self._track is not None:
            self._track.clear_queue()

    @property
    def queued_duration(self) -> float:
        return self._track.queued_duration if self._track is not None else 0.0

    async def wait_for_playout(self) -> None:
        if self._track is not None:
            await self._track.wait_for_playout()
