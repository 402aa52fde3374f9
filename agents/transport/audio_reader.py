"""Reading one remote audio track: 16 kHz mono frames of whole 10 ms units (the SDK's events,
``sdk_frame_ms`` each) from ``rtc.AudioStream`` to the transport's listener, kept in real time by
a :class:`~agents.transport.backlog.StaleAudioGuard`."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from livekit import rtc

from agents.transport.audio import FrameChunker
from agents.transport.backlog import AudioBacklog, StaleAudioGuard, queued_frames
from agents.transport.base import INBOUND_SAMPLE_RATE, INBOUND_SAMPLES_PER_FRAME, RoomListener
from agents.transport.decode_watch import DECODE_WATCH_S, NotDecoded, watch_decoding
from agents.transport.ffi_routing import AudioEventRouter

log = structlog.get_logger("agents.transport.livekit")

SDK_FRAME_MS = 30
"""Audio the SDK hands over per event (ms): three 10 ms frames, a third of the per-event cost of
10 ms events; turn decisions move by at most 20 ms, within one 32 ms VAD window."""
MAX_AUDIO_BACKLOG_MS = 300.0
"""Audio queued behind the frame in hand beyond which a reader drops the stale part (ms)."""


class AudioReader:
    """Reads one audio track as 16 kHz mono frames of whole 10 ms units and hands them to
    ``listener``."""

    def __init__(
        self,
        *,
        track: rtc.Track,
        identity: str,
        listener: RoomListener,
        max_backlog_ms: float = MAX_AUDIO_BACKLOG_MS,
        backlog: AudioBacklog | None = None,
        router: AudioEventRouter | None = None,
        sdk_frame_ms: int = SDK_FRAME_MS,
        decode_watch_s: float = DECODE_WATCH_S,
    ) -> None:
        self.identity = identity
        self._listener = listener
        # The SDK delivers sdk_frame_ms at a time (one native event, one loop wake-up, one frame
        # object each), handed on whole: the noise suppressor takes any number of 10 ms units
        # in one call, and the pipeline any length. Its ring holds at most a few limits' worth:
        # memory stays bounded even when this reader is not scheduled at all; the guard keeps
        # it in real time before that.
        self._stream = rtc.AudioStream.from_track(
            track=track, sample_rate=INBOUND_SAMPLE_RATE, num_channels=1,
            frame_size_ms=sdk_frame_ms,
            capacity=4 * max(1, int(max_backlog_ms / sdk_frame_ms)),
        )
        self.routed = router.adopt(self._stream) if router is not None else False
        self.guard = StaleAudioGuard(identity=identity, max_backlog_ms=max_backlog_ms,
                                     backlog=backlog, frame_ms=sdk_frame_ms)
        self._backlog = backlog
        if backlog is not None:
            backlog.add(self.guard)
        self._chunker = FrameChunker()
        self.frames = 0
        self.listener_errors = 0
        self._closed = False
        self._stream_closed = False
        self._task = asyncio.create_task(self._run(), name=f"livekit.audio_reader.{identity}")
        self._watch = asyncio.create_task(
            watch_decoding(track=track, identity=identity, frames=lambda: self.frames,
                           report=self._not_decoded, after_s=decode_watch_s),
            name=f"livekit.decode_watch.{identity}")

    def _not_decoded(self, found: NotDecoded) -> None:
        if self._closed:
            return
        try:
            self._listener.audio_not_decoded(found.identity, found.packets)
        except Exception:
            log.exception("audio_listener_failed", identity=self.identity)

    async def _run(self) -> None:
        gap_ms = 0.0
        async for event in self._stream:
            if self.guard.stale(queued_frames(self._stream)):
                gap_ms += self.guard.frame_ms
                continue
            if gap_ms:
                gap, gap_ms = gap_ms, 0.0
                try:
                    self._listener.audio_gap(self.identity, gap)
                except Exception:
                    log.exception("audio_listener_failed", identity=self.identity)
            frame = event.frame
            if (frame.num_channels == 1 and frame.samples_per_channel
                    and frame.samples_per_channel % INBOUND_SAMPLES_PER_FRAME == 0):
                frames = [frame]
            else:  # not seen from the SDK; cut to 10 ms rather than pass an odd length on
                frames = self._chunker.push(frame.data)
            for f in frames:
                if self._closed:
                    return
                self.frames += 1
                try:
                    self._listener.audio_frame(self.identity, f)
                except Exception:  # one bad frame must not make the agent deaf to this speaker
                    self.listener_errors += 1
                    if self.listener_errors == 1:
                        log.exception("audio_listener_failed", identity=self.identity)

    def stop(self) -> None:
        """No frame is delivered after this returns; :meth:`aclose` releases the stream."""
        self._closed = True
        self._task.cancel()
        self._watch.cancel()

    async def aclose(self) -> None:
        self.stop()
        await asyncio.gather(self._task, self._watch, return_exceptions=True)
        if self._backlog is not None:
            self._backlog.discard(self.guard)
        if not self._stream_closed:
            self._stream_closed = True
            # What this speaker's track gave: a job deaf to a speaker shows here as no frames.
            log.info("audio_reader_closed", identity=self.identity, frames=self.frames,
                     routed=self.routed, listener_errors=self.listener_errors)
            with contextlib.suppress(Exception):
                await self._stream.aclose()
