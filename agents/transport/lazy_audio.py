"""The agent's audio track for a job that never speaks: announced, then released until used.

A published ``rtc.AudioSource`` costs CPU while nobody speaks into it: the SDK feeds the track
silence every 10 ms and WebRTC's audio encoder encodes it (measured: about 0.03 of a core per
job, more than half of what a listening job costs in ``bench/bench_room_density.py``; muting the
track does not stop it). Yet a participant that publishes nothing is announced to the others in
the room only by the server's periodic batch (livekit-server sends a non-publisher's updates
every 3 s): the caller would see a listening agent seconds late. So a job whose pipelines never
speak (no text-to-speech) publishes its track as every job does, which makes the server announce
it at once, and releases it (:meth:`~agents.transport.base.RoomTransport.release_audio`) after
``RELEASE_AFTER`` seconds without a frame. Should it speak after all, its next frame publishes
the track again (that frame waits for the publication, once).

Unpublishing costs a renegotiation with the server, a burst of CPU: in a small CPU quota it held
the job's audio back by up to half a second. Timed from the join, it tends to land at the end of
the caller's first sentence, exactly where a late turn decision is heard. So the release waits,
past its delay, until the conversation is quiet (:meth:`LazyAudioOutput.hold_while`: nobody
speaking, no turn in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from livekit import rtc

from agents.io import AudioOutput
from agents.transport.base import RoomTransport, TrackAudioOutput

RELEASE_AFTER = 4.0
"""Seconds a never-speaking job keeps its first track: the server announces the agent as a
publisher once the track's media reaches it (well within this on loopback and under a burst of
20); after that the silent track is only cost."""

QUIET_POLL = 0.25
"""Seconds between looks at a busy conversation while a due release waits for quiet."""


async def agent_audio(transport: RoomTransport, *, sample_rate: int,
                      speaks: bool) -> AudioOutput:
    """The job's audio output: its track, published now; for a job that never ``speaks``,
    released after :data:`RELEASE_AFTER` s without a frame and published again at a next
    frame."""
    track = await transport.publish_audio(sample_rate=sample_rate)
    if speaks:
        return track
    lazy = LazyAudioOutput(publish=lambda: transport.publish_audio(sample_rate=sample_rate),
                           release=transport.release_audio, sample_rate=sample_rate,
                           track=track)
    lazy.release_later(RELEASE_AFTER)
    return lazy


class LazyAudioOutput:
    """An :class:`agents.io.AudioOutput` whose track may be released while unused and is
    published again at the next frame. :meth:`aclose` stops a pending release."""

    def __init__(self, *, publish: Callable[[], Awaitable[TrackAudioOutput]],
                 release: Callable[[], Awaitable[bool]], sample_rate: int,
                 track: TrackAudioOutput | None = None) -> None:
        self._publish = publish
        self._release = release
        self._sample_rate = sample_rate
        self._track = track
        self._lock = asyncio.Lock()
        self._releasing: asyncio.Task[None] | None = None
        self._busy: Callable[[], bool] | None = None
        self.frames = 0

    @property
    def published(self) -> TrackAudioOutput | None:
        """The track, while published."""
        return self._track

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def hold_while(self, busy: Callable[[], bool] | None) -> None:
        """A due release waits while ``busy()`` is true (a caller speaking, a turn in flight)."""
        self._busy = busy

    def release_later(self, delay: float) -> None:
        if self._releasing is None:
            self._releasing = asyncio.get_running_loop().create_task(
                self._release_unused(delay), name="agent-audio.release")

    async def _release_unused(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:  # ends with the job at the latest: aclose cancels this task
            if self.frames or self._busy is None or not self._busy():
                break
            await asyncio.sleep(QUIET_POLL)  # a predicate, not an event: looked at in turn
        async with self._lock:
            if self.frames == 0 and self._track is not None and await self._release():
                self._track = None

    async def _ensure(self) -> TrackAudioOutput:
        async with self._lock:  # one publication for concurrent frames, none during a release
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
        track = self._track if self._track is not None and not self._lock.locked() else (
            await self._ensure())
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

    async def aclose(self) -> None:
        """Stop a pending release (the transport unpublishes what is published when it
        closes). Idempotent."""
        task, self._releasing = self._releasing, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
