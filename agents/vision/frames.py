"""Sampled video frames, per participant and track, latest only.

``push_video`` is called for every decoded frame (tens per second per track) and does almost
nothing: it keeps a reference to the frame when a sample is due, replacing any sample not yet
converted. One worker task converts due samples off the event loop (a thread: OpenCV releases
the GIL), once each, into a small JPEG plus a thumbnail for change detection. Nothing queues: a
slow consumer only ever sees the newest image.

:class:`FrameStore` is the ``frames`` object the voice pipeline takes (``push_video``,
``latest_images``) and the source of the standalone vision pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

import structlog
from livekit import rtc

from agents.providers.base import ImagePart
from agents.vision.change import Thumb, thumbnail
from agents.vision.config import VisionConfig
from agents.vision.convert import Encoded, FrameError, encode
from agents.vision.metrics import VisionMetrics, default_vision_metrics

log = structlog.get_logger("agents.vision")

TrackSource = Literal["camera", "screen_share"]
SOURCES: tuple[TrackSource, ...] = ("camera", "screen_share")


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    """One converted frame."""

    speaker: str
    source: TrackSource
    seq: int
    """Increases with every sample of the store (all tracks)."""
    image: ImagePart
    thumb: Thumb
    captured_at: float
    """Clock time the frame arrived (``push_video``)."""
    encoded_at: float
    frame_width: int
    frame_height: int


@dataclass(kw_only=True, slots=True)
class _Track:
    speaker: str
    source: TrackSource
    next_due: float = float("-inf")
    last_frame_at: float = float("-inf")
    pending: rtc.VideoFrame | None = None
    pending_at: float = 0.0
    latest: Sample | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("frames", "sampled", "superseded", "converted", "failed"), 0
        )
    )


AFTER_END_GRACE_S = 2.0
"""Frames of a track arriving this long after it ended are discarded, not a new track."""
MAX_RECORDED_TRACKS = 256
"""Tracks whose counters the record keeps (and ended tracks remembered) at most."""


class FrameStore:
    """Latest sampled image per (participant, track source)."""

    def __init__(
        self,
        *,
        config: VisionConfig,
        clock: Callable[[], float] = time.monotonic,
        metrics: VisionMetrics | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._metrics = metrics or default_vision_metrics()
        self._tracks: dict[tuple[str, TrackSource], _Track] = {}
        self._speaking: set[str] = set()
        self._seq = 0
        self._wake = asyncio.Event()
        self._new_sample = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._ended: dict[tuple[str, str], float] = {}
        """Tracks dropped, and when: frames still in flight for them are discarded."""
        self._past_counts: dict[str, dict[str, int]] = {}
        """Counters of tracks that have ended, for the record (at most MAX_RECORDED_TRACKS)."""

    # --- the hot path ------------------------------------------------------------------------

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        """Offer a frame of ``speaker``'s ``source`` track (``camera`` or ``screen_share``).
        Keeps it only when a sample is due; never blocks. Raises ``ValueError`` for an unknown
        source; bad frame contents are logged and dropped when converted."""
        if source not in SOURCES:
            raise ValueError(f"unknown video source {source!r}; expected one of {SOURCES}")
        if self._closed:
            return
        key = (speaker, source)
        track = self._tracks.get(key)
        now = self._clock()
        if track is None:
            ended = self._ended.get(key)
            if ended is not None:
                if now - ended < AFTER_END_GRACE_S:
                    # libwebrtc delivers a few (black) frames after an unpublish: not an image
                    self._count_past(key, "after_end")
                    return
                del self._ended[key]
            track = self._tracks[key] = _Track(speaker=speaker, source=source)
        track.last_frame_at = now
        track.counts["frames"] += 1
        if now < track.next_due:
            return
        period = self._config.period(speaking=speaker in self._speaking)
        step = track.next_due + period
        track.next_due = step if step > now else now + period
        if track.pending is not None:
            track.counts["superseded"] += 1
            self._metrics.frames.labels(source, "superseded").inc()
        track.pending, track.pending_at = frame, now
        track.counts["sampled"] += 1
        self._metrics.frames.labels(source, "sampled").inc()
        self._idle.clear()
        self._wake.set()
        self._ensure_worker()

    def set_speaking(self, speaker: str, speaking: bool) -> None:
        """Tell the store whether ``speaker`` is talking (selects ``speaking_fps``/``idle_fps``).
        The new rate applies from the next sample."""
        if speaking:
            self._speaking.add(speaker)
        else:
            self._speaking.discard(speaker)

    # --- readers -----------------------------------------------------------------------------

    def latest(self, speaker: str, source: TrackSource) -> Sample | None:
        track = self._tracks.get((speaker, source))
        return track.latest if track is not None else None

    def samples(self) -> list[Sample]:
        """The latest sample of every track that has one (live or not)."""
        return [t.latest for t in self._tracks.values() if t.latest is not None]

    def is_live(self, speaker: str, source: TrackSource) -> bool:
        track = self._tracks.get((speaker, source))
        return track is not None and self._clock() - track.last_frame_at <= self._config.max_age_s

    def latest_images(self, speaker: str) -> list[ImagePart]:
        """What a voice turn of ``speaker`` attaches: their live camera image, and a live screen
        share (theirs, else the most recently updated one of anybody). Nothing when
        ``attach_to_voice`` is off."""
        images: list[ImagePart] = []
        if not self._config.attach_to_voice:
            return images
        cam = self.latest(speaker, "camera")
        if cam is not None and self.is_live(speaker, "camera"):
            images.append(cam.image)
        screen = self.latest(speaker, "screen_share")
        if screen is None or not self.is_live(speaker, "screen_share"):
            shares = [
                t.latest for (who, src), t in self._tracks.items()
                if src == "screen_share" and t.latest is not None and self.is_live(who, src)
            ]
            screen = max(shares, key=lambda s: s.seq, default=None)
        if screen is not None:
            images.append(screen.image)
        return images

    @property
    def seq(self) -> int:
        return self._seq

    async def wait_new(self, after: int) -> int:
        """Wait until a sample newer than ``after`` exists; return the newest ``seq``."""
        while self._seq <= after:
            await self._new_sample.wait()
        return self._seq

    async def drain(self) -> None:
        """Wait until every due sample has been converted (or dropped)."""
        await self._idle.wait()

    # --- track lifecycle ---------------------------------------------------------------------

    def drop_track(self, speaker: str, source: str) -> None:
        """The track was unpublished or unsubscribed: forget its frames (its counters stay for
        the record). Frames of it that arrive within :data:`AFTER_END_GRACE_S` are discarded."""
        track = self._tracks.pop((speaker, source), None)  # type: ignore[arg-type]
        self._ended[(speaker, source)] = self._clock()
        while len(self._ended) > MAX_RECORDED_TRACKS:
            del self._ended[next(iter(self._ended))]
        if track is not None:
            self._keep_counts(track)

    def speaker_left(self, speaker: str) -> None:
        for key in [k for k in self._tracks if k[0] == speaker]:
            self._keep_counts(self._tracks.pop(key))
        self._speaking.discard(speaker)

    def _keep_counts(self, track: _Track) -> None:
        for name, n in track.counts.items():
            self._count_past((track.speaker, track.source), name, n)

    def _count_past(self, key: tuple[str, str], name: str, n: int = 1) -> None:
        label = f"{key[0]}/{key[1]}"
        counts = self._past_counts.get(label)
        if counts is None:
            if len(self._past_counts) >= MAX_RECORDED_TRACKS:
                return
            counts = self._past_counts[label] = {}
        counts[name] = counts.get(name, 0) + n

    def held_bytes(self) -> int:
        """Memory held for images: pending raw frames, JPEGs and thumbnails."""
        total = 0
        for t in self._tracks.values():
            if t.pending is not None:
                total += t.pending.data.nbytes
            if t.latest is not None:
                total += len(t.latest.image.jpeg) + t.latest.thumb.nbytes
        return total

    def record(self) -> dict[str, dict[str, int]]:
        """Per-track frame counters for the job record: tracks that ended (or were closed with
        the store) included, a track published twice summed."""
        merged = {label: dict(counts) for label, counts in self._past_counts.items()}
        for t in self._tracks.values():
            counts = merged.setdefault(f"{t.speaker}/{t.source}", {})
            for name, n in t.counts.items():
                counts[name] = counts.get(name, 0) + n
        return merged

    # --- conversion --------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._convert_loop(), name="vision-frame-convert"
            )

    async def _convert_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for track in list(self._tracks.values()):
                if track.pending is not None:
                    # The frame is passed on, never kept in this (long-lived) coroutine.
                    await self._convert(track, track.pending, track.pending_at)
            if not any(t.pending is not None for t in self._tracks.values()):
                self._idle.set()

    async def _convert(self, track: _Track, frame: rtc.VideoFrame, at: float) -> None:
        track.pending = None
        try:
            enc, thumb = await asyncio.to_thread(self._encode, frame)
        except Exception as e:  # noqa: BLE001 (one bad frame must not stop the worker)
            track.counts["failed"] += 1
            self._metrics.frames.labels(track.source, "failed").inc()
            log.warning(
                "vision_frame_dropped", speaker=track.speaker, source=track.source,
                width=frame.width, height=frame.height, error=str(e),
                error_type=type(e).__name__, expected=isinstance(e, FrameError),
            )
            return
        if self._tracks.get((track.speaker, track.source)) is not track:
            return  # the track ended while its frame was converted
        self._seq += 1
        h, w = enc.rgb.shape[:2]
        track.latest = Sample(
            speaker=track.speaker, source=track.source, seq=self._seq,
            image=ImagePart(jpeg=enc.jpeg, width=w, height=h, source=track.source),
            thumb=thumb, captured_at=at, encoded_at=self._clock(),
            frame_width=frame.width, frame_height=frame.height,
        )
        track.counts["converted"] += 1
        self._metrics.frames.labels(track.source, "converted").inc()
        self._new_sample.set()
        self._new_sample = asyncio.Event()

    def _encode(self, frame: rtc.VideoFrame) -> tuple[Encoded, Thumb]:
        """In a worker thread: the one conversion of a sampled frame."""
        enc = encode(frame, max_side=self._config.max_side, jpeg_quality=self._config.jpeg_quality)
        return enc, thumbnail(enc.rgb)

    # --- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the conversion worker and drop every frame. Idempotent."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for track in self._tracks.values():
            self._keep_counts(track)
        self._tracks.clear()
        self._idle.set()

    async def __aenter__(self) -> FrameStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
