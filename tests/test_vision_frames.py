"""FrameStore: sampling rate, latest-only conversion, formats, liveness, lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc
from vision_fakes import (
    BLUE,
    GREEN,
    RED,
    FakeClock,
    frame,
    image,
    mean_colour,
    metrics,
)

from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore


def store(clock: FakeClock, **cfg: object) -> FrameStore:
    return FrameStore(config=VisionConfig.model_validate(cfg), clock=clock, metrics=metrics())


def feed(fs: FrameStore, clock: FakeClock, f: rtc.VideoFrame, *, seconds: float, fps: int,
         speaker: str = "alice", source: str = "camera") -> None:
    for _ in range(round(seconds * fps)):
        fs.push_video(speaker, source, f)
        clock.advance(1.0 / fps)


async def test_sampling_rate_follows_fps_not_the_input_rate() -> None:
    clock = FakeClock()
    async with store(clock, fps=2.0) as fs:
        feed(fs, clock, frame(image(RED, 64, 48)), seconds=10, fps=30)
        await fs.drain()
        counts = fs.record()["alice/camera"]
    assert counts["frames"] == 300
    assert counts["sampled"] == 20


async def test_speaking_and_idle_rates_apply_per_speaker() -> None:
    clock = FakeClock()
    async with store(clock, fps=1.0, speaking_fps=5.0, idle_fps=0.5) as fs:
        f = frame(image(RED, 64, 48))
        fs.set_speaking("alice", True)
        feed(fs, clock, f, seconds=4, fps=20, speaker="alice")
        feed(fs, clock, f, seconds=4, fps=20, speaker="bob")
        await fs.drain()
        rec = fs.record()
    assert rec["alice/camera"]["sampled"] == 20
    assert rec["bob/camera"]["sampled"] == 2


async def test_only_the_latest_due_frame_is_converted() -> None:
    clock = FakeClock()
    async with store(clock, fps=10.0) as fs:
        # Five due frames before the worker gets a chance to run: four are superseded.
        for colour in (RED, GREEN, RED, GREEN, BLUE):
            fs.push_video("alice", "camera", frame(image(colour, 320, 240)))
            clock.advance(0.2)
        await fs.drain()
        counts = fs.record()["alice/camera"]
        latest = fs.latest("alice", "camera")
    assert counts["sampled"] == 5
    assert counts["superseded"] == 4
    assert counts["converted"] == 1
    assert latest is not None
    r, g, b = mean_colour(latest.image.jpeg)
    assert b > 180 and r < 80 and g < 80


@pytest.mark.parametrize(
    "kind", ["I420", "RGBA", "BGRA", "ARGB", "ABGR", "RGB24", "NV12", "I444", "I422", "I010"]
)
async def test_every_buffer_layout_converts_to_the_right_colour(kind: str) -> None:
    clock = FakeClock()
    async with store(clock, max_side=256) as fs:
        fs.push_video("alice", "camera", frame(image(RED, 640, 360), kind))
        await fs.drain()
        sample = fs.latest("alice", "camera")
    assert sample is not None
    assert (sample.image.width, sample.image.height) == (256, 144)
    r, g, b = mean_colour(sample.image.jpeg)
    assert abs(r - RED[0]) < 20 and abs(g - RED[1]) < 20 and abs(b - RED[2]) < 20


async def test_odd_sized_and_ten_bit_frames_convert() -> None:
    clock = FakeClock()
    odd = frame(image(GREEN, 321, 241))
    ten_bit = frame(image(GREEN, 320, 240), "I010")
    async with store(clock, max_side=512, fps=30.0) as fs:
        fs.push_video("alice", "camera", odd)
        fs.push_video("bob", "camera", ten_bit)
        await fs.drain()
        a, b = fs.latest("alice", "camera"), fs.latest("bob", "camera")
    assert a is not None and b is not None
    assert (a.image.width, a.image.height) == (321, 241)
    for sample in (a, b):
        r, g, bl = mean_colour(sample.image.jpeg)
        assert g > 150 and r < 80 and bl < 80


async def test_a_corrupt_frame_is_dropped_and_the_next_one_still_converts() -> None:
    clock = FakeClock()
    async with store(clock) as fs:
        short = rtc.VideoFrame(1280, 720, rtc.VideoBufferType.I420, bytes(1000))
        fs.push_video("alice", "camera", short)
        await fs.drain()
        assert fs.latest("alice", "camera") is None
        clock.advance(2.0)
        fs.push_video("alice", "camera", rtc.VideoFrame(0, 0, rtc.VideoBufferType.RGBA, b""))
        await fs.drain()
        clock.advance(2.0)
        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        await fs.drain()
        counts = fs.record()["alice/camera"]
        assert counts["failed"] == 2 and counts["converted"] == 1
        assert fs.latest("alice", "camera") is not None


async def test_unknown_source_is_refused() -> None:
    async with store(FakeClock()) as fs:
        with pytest.raises(ValueError, match="unknown video source"):
            fs.push_video("alice", "microphone", frame(image(RED, 64, 48)))


async def test_latest_images_gives_the_speakers_camera_and_any_live_screen_share() -> None:
    clock = FakeClock()
    async with store(clock, max_age_s=5.0) as fs:
        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        fs.push_video("bob", "camera", frame(image(GREEN, 64, 48)))
        fs.push_video("bob", "screen_share", frame(image(BLUE, 128, 72)))
        await fs.drain()
        alice = fs.latest_images("alice")
        assert [i.source for i in alice] == ["camera", "screen_share"]
        assert mean_colour(alice[0].jpeg)[0] > 180  # her own camera, red
        assert mean_colour(alice[1].jpeg)[2] > 180  # bob's screen, blue
        assert fs.latest_images("carol") == [fs.latest("bob", "screen_share").image]  # type: ignore[union-attr]

        clock.advance(6.0)  # every track stale: nothing is attached
        assert fs.latest_images("alice") == []

        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        await fs.drain()
        assert [i.source for i in fs.latest_images("alice")] == ["camera"]
        fs.speaker_left("alice")
        assert fs.latest_images("alice") == []


async def test_attach_to_voice_off_attaches_nothing() -> None:
    async with store(FakeClock(), attach_to_voice=False) as fs:
        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        await fs.drain()
        assert fs.latest("alice", "camera") is not None
        assert fs.latest_images("alice") == []


async def test_wait_new_wakes_on_the_next_sample() -> None:
    clock = FakeClock()
    async with store(clock) as fs:
        waiter = asyncio.create_task(fs.wait_new(fs.seq), name="test-wait-new")
        await asyncio.sleep(0)
        assert not waiter.done()
        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        assert await asyncio.wait_for(waiter, 5) == 1


async def test_aclose_is_idempotent_and_ignores_later_frames() -> None:
    fs = store(FakeClock())
    fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
    await fs.aclose()
    await fs.aclose()
    fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
    # The images are gone; the counters stay for the record (the frame after close not in them).
    assert fs.samples() == [] and fs.record()["alice/camera"]["frames"] == 1
    assert [t for t in asyncio.all_tasks() if t.get_name() == "vision-frame-convert"] == []


async def test_an_unexpected_conversion_error_does_not_stop_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    async with store(clock) as fs:
        real = fs._encode
        calls = iter([RuntimeError("boom")])

        def flaky(f: rtc.VideoFrame) -> object:
            err = next(calls, None)
            if err is not None:
                raise err
            return real(f)

        monkeypatch.setattr(fs, "_encode", flaky)
        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        await fs.drain()
        clock.advance(2.0)
        fs.push_video("alice", "camera", frame(image(RED, 64, 48)))
        await fs.drain()
        counts = fs.record()["alice/camera"]
    assert counts["failed"] == 1 and counts["converted"] == 1
