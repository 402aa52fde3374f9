"""The audio front end: noise suppression changes the audio, per speaker, only when on."""

from __future__ import annotations

import random

import numpy as np
from livekit import rtc

from agents.audio_frontend import AudioFrontend


def noise_frames(count: int, *, seed: int = 1, level: float = 2000.0) -> list[rtc.AudioFrame]:
    rng = random.Random(seed)
    frames = []
    for _ in range(count):
        frame = rtc.AudioFrame.create(16000, 1, 160)
        samples = np.frombuffer(frame.data, dtype=np.int16)
        samples[:] = np.array([rng.gauss(0, level) for _ in range(160)]).clip(-32768, 32767)
        frames.append(frame)
    return frames


def energy(frames: list[rtc.AudioFrame]) -> float:
    return float(np.mean([np.mean(np.frombuffer(f.data, dtype=np.int16).astype(np.float64) ** 2)
                          for f in frames]))


def test_noise_suppression_attenuates_steady_noise() -> None:
    frontend = AudioFrontend(noise_suppression=True)
    frames = noise_frames(300)
    before = energy(frames[-100:])
    out = [frontend.process("alice", f) for f in frames]
    assert energy(out[-100:]) < 0.5 * before
    assert frontend.speakers == 1
    frontend.drop("alice")
    assert frontend.speakers == 0


def test_off_passes_frames_through_untouched() -> None:
    frontend = AudioFrontend(noise_suppression=False)
    frames = noise_frames(20)
    copies = [bytes(f.data) for f in frames]
    out = [frontend.process("alice", f) for f in frames]
    assert [bytes(f.data) for f in out] == copies
    assert frontend.speakers == 0


def test_a_frame_of_several_10ms_units_is_processed_as_they_would_be_one_by_one() -> None:
    one_by_one, whole = AudioFrontend(noise_suppression=True), AudioFrontend(noise_suppression=True)
    frames = noise_frames(90)
    tens = [bytes(one_by_one.process("alice", f).data) for f in noise_frames(90)]
    thirties = []
    for i in range(0, 90, 3):
        frame = rtc.AudioFrame(b"".join(bytes(f.data) for f in frames[i:i + 3]), 16000, 1, 480)
        thirties.append(bytes(whole.process("alice", frame).data))
    assert b"".join(thirties) == b"".join(tens)
    assert b"".join(tens) != b"".join(bytes(f.data) for f in frames)  # it did suppress
    assert whole.frames_skipped == 0


def test_frames_that_are_not_whole_10ms_units_are_passed_through_and_counted() -> None:
    frontend = AudioFrontend(noise_suppression=True)
    odd = rtc.AudioFrame.create(16000, 1, 250)
    assert frontend.process("bob", odd) is odd
    assert frontend.frames_skipped == 1
