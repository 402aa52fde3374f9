"""The agent's audio track for a job that never speaks: published only if a frame comes.

A published ``rtc.AudioSource`` costs CPU while nobody speaks into it: the SDK feeds the track
silence every 10 ms and WebRTC's audio encoder encodes it (measured: about 0.03 of a core per
job, more than half of what a listening job costs in ``bench/bench_room_density.py``; muting the
track does not stop it), and publishing it negotiates a second peer connection with the server
in the middle of the join. A job whose pipelines never speak (no text-to-speech) therefore
publishes nothing when it joins: the room learns of the agent from its ``lk.agent.state``
attribute (:mod:`agents.agent_state`), not from a track. Should it speak after all, its first
frame publishes the track (that frame waits for the publication, once) and the track stays.

A job whose token may not set its attributes is then announced only by the server's periodic
batch (livekit-server sends a non-publisher's updates every 3 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from livekit import rtc

from agents.io import AudioOutput
from agents.transport.base import RoomTransport, TrackAudioOutput


async def agent_audio(transport: RoomTransport, *, sample_rate: int,
                      speaks: bool) -> AudioOutput:
    """The job's audio output: its track, published now when it ``speaks``; otherwise
    published at its first frame."""
    if speaks:
        return await transport.publish_audio(sample_rate=sample_rate)
    return LazyAudioOutput(publish=lambda: transport.publish_audio(sample_rate=sample_rate),
                           sample_rate=sample_rate)


class LazyAudioOutput:
    """An :class:`agents.io.AudioOutput` whose track is published at its first frame."""

    def __init__(self, *, publish: Callable[[], Awaitable[TrackAudioOutput]],
                 sample_rate: int) -> None:
        self._publish = publish
        self._sample_rate = sample_rate
        self._track: TrackAudioOutput | None = None
        self._lock = asyncio.Lock()
        self.frames = 0

    @property
    def published(self) -> TrackAudioOutput | None:
        """The track, once published."""
        return self._track

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    async def _ensure(self) -> TrackAudioOutput:
        async with self._lock:  # one publication for concurrent frames
            if self._track is None:
                # A TransportError propagates to the speaker, like a failed capture; the next
                # frame tries again.
                self._track = await self._publish()
            return self._track

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if frame.sample_rate != self._sample_rate or frame.num_channels != 1:
            raise ValueError(
                f"expected mono {self._sample_rate} Hz frames, got "
                f"{frame.num_channels} ch {frame.sample_rate} Hz"
            )
        self.frames += 1
        track = self._track if self._track is not None else await self._ensure()
        await track.capture_frame(frame)

    def clear_queue(self) -> None:
        if self._track is not None:
            self._track.clear_queue()

    @property
    def queued_duration(self) -> float:
        return self._track.queued_duration if self._track is not None else 0.0

    async def wait_for_playout(self) -> None:
        if self._track is not None:
            await self._track.wait_for_playout()
