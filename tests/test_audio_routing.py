"""Audio events routed to their own stream: with several streams in the process, each reader
gets its own track's frames only, the SDK no longer hands every frame to every stream, and a
stream's end still arrives (its reader closes)."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from room_kit import AudioListener

from agents.transport.audio_reader import AudioReader
from agents.transport.ffi_routing import AudioEventRouter


class Levels(AudioListener):
    """Records the mean level of each frame per speaker."""

    def __init__(self) -> None:
        self.levels: dict[str, list[float]] = {}

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        samples = np.frombuffer(frame.data, np.int16)
        self.levels.setdefault(identity, []).append(float(np.abs(samples).mean()))


def constant(level: int) -> rtc.AudioFrame:
    return rtc.AudioFrame(np.full(480, level, np.int16).tobytes(), 48000, 1, 480)


def audio_subscribers() -> int:
    return sum(1 for q, _, fn in FfiClient.instance.queue._subscribers
               if fn is not None and getattr(fn, "__name__", "") == "<lambda>"
               and "audio_stream_event" in fn.__code__.co_consts)


async def test_each_reader_hears_its_own_track_and_closes_through_the_router() -> None:
    router = AudioEventRouter()
    listener = Levels()
    sources = {name: rtc.AudioSource(48000, 1, queue_size_ms=500) for name in ("quiet", "loud")}
    before = audio_subscribers()
    readers = [
        AudioReader(track=rtc.LocalAudioTrack.create_audio_track(name, src), identity=name,
                    listener=listener, router=router)
        for name, src in sources.items()
    ]
    assert all(r.routed for r in readers) and router.streams == 2
    assert audio_subscribers() == before  # the streams' own catch-all subscriptions are gone
    try:
        for _ in range(30):
            await sources["quiet"].capture_frame(constant(100))
            await sources["loud"].capture_frame(constant(8000))
        async with asyncio.timeout(5):
            while min(len(listener.levels.get(n, [])) for n in sources) < 40:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        async with asyncio.timeout(5):  # the end of each stream comes through the router too
            for r in readers:
                await r.aclose()
        for src in sources.values():
            await src.aclose()
    voiced = {n: [v for v in levels if v > 0] for n, levels in listener.levels.items()}
    # Nothing of the loud track reached the quiet reader, and the loud one heard its own
    # (the resampler ramps the first and last frames).
    assert voiced["quiet"] and max(voiced["quiet"]) < 1000
    assert voiced["loud"] and float(np.median(voiced["loud"])) > 7000
    assert router.streams == 0
    router.close()
