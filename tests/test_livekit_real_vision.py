"""An unpublished camera against a real ``livekit-server`` (issue 16, item 12): the LiveKit
transport reports the track's end and hands over no frame after it, so the agent never
describes the black frames libwebrtc delivers after an unpublish."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc
from livekit_env import LiveKitServer
from test_vision_track_end import VideoEvents
from vision_fakes import BLACK, RED, frame, image

from agents.transport.livekit import LiveKitTransport

pytestmark = [pytest.mark.livekit, pytest.mark.timeout(90)]


async def _until(condition: object, event: asyncio.Event, *, within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), 0.2)
            except TimeoutError:
                pass


async def test_an_unpublished_camera_ends_its_track_and_no_frame_follows(
    livekit_server: LiveKitServer,
) -> None:
    room_name = "camera-unpublish"
    listener = VideoEvents()
    transport = LiveKitTransport()
    alice = rtc.Room()
    try:
        await transport.connect(
            url=livekit_server.url,
            token=livekit_server.agent_token(room_name, "ai-agent-camera"),
            listener=listener,
            wants_audio=lambda info: info.identity == "alice",
            video=True,
        )
        await alice.connect(livekit_server.url, livekit_server.token(room_name, "alice"))
        source = rtc.VideoSource(160, 120)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        publication = await alice.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        )
        red = frame(image(RED, 160, 120))

        async def camera(picture: rtc.VideoFrame) -> None:
            while True:
                source.capture_frame(picture)
                await asyncio.sleep(1 / 15)

        sending = asyncio.create_task(camera(red), name="test.camera")
        try:
            await _until(lambda: len(listener.video) >= 3, listener.video_arrived, within=30)
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            # Black frames right up to the unpublish, as a camera being switched off sends.
            sending = asyncio.create_task(camera(frame(image(BLACK, 160, 120))),
                                          name="test.camera.black")
            await asyncio.sleep(0.2)
            await alice.local_participant.unpublish_track(publication.sid)
            ended = asyncio.Event()
            await _until(lambda: ("video_ended", "alice", "camera") in listener.events, ended,
                         within=10)
            seen = len(listener.video)
            await asyncio.sleep(1.5)
            assert len(listener.video) == seen, "frames arrived after the track ended"
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
    finally:
        await transport.aclose()
        await alice.disconnect()
