"""VideoTrackPump: frames of a real rtc.VideoStream reach the FrameStore."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc
from vision_fakes import BLUE, FakeClock, frame, image, mean_colour, metrics

from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore
from agents.vision.stream import VideoTrackPump, source_name


def test_track_sources_map_to_conversation_sources() -> None:
    assert source_name(rtc.TrackSource.SOURCE_CAMERA) == "camera"
    assert source_name(rtc.TrackSource.SOURCE_SCREENSHARE) == "screen_share"
    assert source_name(rtc.TrackSource.SOURCE_MICROPHONE) is None


async def test_pump_feeds_a_tracks_frames_into_the_store() -> None:
    source = rtc.VideoSource(320, 180)
    track = rtc.LocalVideoTrack.create_video_track("cam", source)
    clock = FakeClock()
    async with FrameStore(config=VisionConfig(fps=30.0), clock=clock, metrics=metrics()) as fs:
        pump = VideoTrackPump(track=track, speaker="alice", source="camera", sink=fs)
        def blue_arrived() -> bool:
            sample = fs.latest("alice", "camera")
            return sample is not None and mean_colour(sample.image.jpeg)[2] > 180

        try:
            # WebRTC may hand over a blank frame first; wait for the captured picture.
            async with asyncio.timeout(10):
                while not blue_arrived():
                    source.capture_frame(frame(image(BLUE, 320, 180), "RGBA"))
                    clock.advance(0.1)
                    await asyncio.sleep(0.05)
                    await fs.drain()
        finally:
            await pump.aclose()
            await pump.aclose()
        sample = fs.latest("alice", "camera")
    assert pump.frames >= 1
    assert sample is not None and (sample.frame_width, sample.frame_height) == (320, 180)


async def test_pump_refuses_a_non_video_source() -> None:
    source = rtc.VideoSource(32, 32)
    track = rtc.LocalVideoTrack.create_video_track("cam", source)
    with pytest.raises(ValueError, match="unknown video source"):
        VideoTrackPump(track=track, speaker="a", source="microphone", sink=FrameStore(
            config=VisionConfig(), metrics=metrics()))
