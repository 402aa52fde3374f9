"""A camera that is unpublished is forgotten, not described as black (issue 16, item 12): the
LiveKit transport closes the track's frame path at once and says the track ended, the frame
store drops it and discards libwebrtc's late frames, and the record keeps its counters."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from room_kit import Harness, make_spec
from test_livekit_adapter_events import Events, Participant, Publication, connected, part, pub
from vision_fakes import BLACK, RED, frame, image, metrics

from agents.participant import ConversationContext
from agents.vision.config import VisionConfig
from agents.vision.conversation import WatchingConversation
from agents.vision.frames import AFTER_END_GRACE_S, FrameStore

CAMERA = rtc.TrackSource.SOURCE_CAMERA


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock) -> FrameStore:
    cfg = VisionConfig(fps=5.0, max_age_s=60)
    return FrameStore(config=cfg, clock=clock, metrics=metrics())


async def test_a_dropped_track_is_forgotten_and_its_late_frames_are_not_an_image() -> None:
    clock = Clock()
    frames = store(clock)
    frames.push_video("alice", "camera", frame(image(RED, 640, 360)))
    await frames.drain()
    assert frames.latest("alice", "camera") is not None
    frames.drop_track("alice", "camera")
    for _ in range(3):  # libwebrtc's few black frames after an unpublish
        clock.now += 0.2
        frames.push_video("alice", "camera", frame(image(BLACK, 8, 8)))
    await frames.drain()
    assert frames.latest("alice", "camera") is None
    assert frames.latest_images("alice") == []
    # A camera published again later is a new track.
    clock.now += AFTER_END_GRACE_S
    frames.push_video("alice", "camera", frame(image(RED, 640, 360)))
    await frames.drain()
    assert frames.latest("alice", "camera") is not None
    counts = frames.record()["alice/camera"]
    assert counts["after_end"] == 3 and counts["frames"] == 2 and counts["converted"] == 2
    await frames.aclose()


async def test_frame_counters_survive_the_end_of_the_track_and_the_store() -> None:
    clock = Clock()
    frames = store(clock)
    frames.push_video("alice", "camera", frame(image(RED, 64, 64)))
    frames.push_video("bob", "screen_share", frame(image(RED, 64, 64)))
    await frames.drain()
    frames.speaker_left("bob")
    await frames.aclose()  # what the job's end does before the record is read
    record = frames.record()
    assert record["alice/camera"]["frames"] == 1 and record["alice/camera"]["converted"] == 1
    assert record["bob/screen_share"]["frames"] == 1


class Watching(WatchingConversation):
    """The job's conversation as it is with vision on, with a pass-through inner one."""

    def __init__(self, ctx: ConversationContext) -> None:
        self.frames = FrameStore(config=VisionConfig(fps=5.0), metrics=metrics())
        super().__init__(inner=_Inner(self.frames), frames=self.frames, vision=None)


class _Inner:
    def __init__(self, frames: FrameStore) -> None:
        self._frames = frames
        self._end: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        pass

    def push_text(self, speaker: str, text: str) -> None:
        pass

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        self._frames.push_video(speaker, source, frame)

    def speaker_left(self, speaker: str) -> None:
        if not self._end.done():
            self._end.set_result("left")

    async def run(self) -> str:
        return await self._end

    def record(self) -> dict[str, Any]:
        return {}


async def test_an_unpublished_camera_in_the_room_is_dropped_and_counted_in_the_record() -> None:
    h = Harness(config_overrides={"room": {"video": True}}, conversation_factory=Watching)
    alice = h.hub.room("room-1").add_participant("alice")
    h.start(make_spec(job_type="JT_PUBLISHER", target="alice"))
    await h.running()
    conv: Watching = h.conversation
    alice.push_video(frame(image(RED, 640, 360)))
    async with asyncio.timeout(5):
        await conv.frames.wait_new(0)
    assert conv.frames.latest("alice", "camera") is not None
    alice.unpublish_video()
    alice.push_video(frame(image(BLACK, 8, 8)))  # arrives after the end, as libwebrtc's do
    await asyncio.sleep(0.05)
    await conv.frames.drain()
    assert conv.frames.latest("alice", "camera") is None
    assert conv.frames.latest_images("alice") == []
    alice.leave()
    outcome = await h.outcome()
    counts = outcome.record["conversation"]["vision"]["frames"]["alice/camera"]
    assert counts["frames"] == 1 and counts["after_end"] == 1


class VideoEvents(Events):
    def __init__(self) -> None:
        super().__init__()
        self.video: list[tuple[str, str, int]] = []
        self.video_arrived = asyncio.Event()

    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None:
        self.video.append((identity, source, frame.width))
        self.video_arrived.set()

    def video_track_ended(self, identity: str, source: str) -> None:
        self.events.append(("video_ended", identity, source))


async def test_the_livekit_transport_stops_a_tracks_frames_when_it_is_unsubscribed() -> None:
    listener = VideoEvents()
    transport = connected(listener)
    transport._video = True
    source = rtc.VideoSource(64, 64)
    track = rtc.LocalVideoTrack.create_video_track("cam", source)
    publication = Publication(sid="TR_cam", source=CAMERA, kind=rtc.TrackKind.KIND_VIDEO,
                              track=track, subscribed=True)
    alice = Participant(identity="alice", track_publications={"TR_cam": publication})
    try:
        transport._on_track_subscribed(track, pub(publication), part(alice))
        async with asyncio.timeout(5):
            while not listener.video:
                source.capture_frame(frame(image(RED, 64, 64)))
                listener.video_arrived.clear()
                try:
                    await asyncio.wait_for(listener.video_arrived.wait(), 0.2)
                except TimeoutError:
                    pass
        transport._on_track_unsubscribed(track, pub(publication), part(alice))
        assert ("video_ended", "alice", "camera") in listener.events
        seen = len(listener.video)
        for _ in range(5):
            source.capture_frame(frame(image(BLACK, 64, 64)))
            await asyncio.sleep(0.02)
        assert len(listener.video) == seen
    finally:
        await transport.aclose()
