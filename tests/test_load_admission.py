"""Admission by measured load: event-loop lag, process CPU and audio backlog refuse new jobs as
``busy`` (and native dispatch defers them), ``max_jobs: auto`` follows the measured cost of a
job, and a reader that falls behind drops stale audio to hear in real time again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import make_settings
from livekit import rtc

from agents.job import JobOutcome
from agents.transport.audio_reader import SDK_FRAME_MS, AudioReader
from agents.transport.backlog import AudioBacklog, StaleAudioGuard
from agents.transport.base import RemoteInfo, RoomListener
from app.admission import OVERLOADED, JobRequest
from app.jobs.load import LoadMonitor, LoadSettings
from app.jobs.manager import JobManager
from app.jobs.registry import MemoryJobRegistry
from app.metrics import Metrics


def monitor(backlog: float = 0.0, jobs: int = 0, **settings: Any) -> LoadMonitor:
    values: dict[str, Any] = {"sample_interval": 0.25, "window": 1.0}
    values.update(settings)
    return LoadMonitor(settings=LoadSettings(**values), active_jobs=lambda: jobs,
                       audio_backlog_ms=lambda: backlog, cores=2)


def feed(m: LoadMonitor, n: int, *, lag: float = 0.0, cpu: float = 0.1, jobs: int = 0) -> None:
    for _ in range(n):
        m.record(loop_lag_ms=lag, cpu=cpu, jobs=jobs)


def test_a_quiet_process_is_not_overloaded_and_one_late_wakeup_is_not_overload() -> None:
    m = monitor()
    assert m.overloaded() is None  # nothing measured yet
    feed(m, 3)
    m.record(loop_lag_ms=250, cpu=0.1, jobs=0)  # one hiccup: mean over the window stays low
    assert m.overloaded() is None


def test_sustained_loop_lag_cpu_or_audio_backlog_each_refuse() -> None:
    lagging = monitor()
    feed(lagging, 4, lag=180)
    assert (lagging.overloaded() or "").startswith("event loop lag")

    busy = monitor()
    feed(busy, 4, cpu=0.95)
    assert (busy.overloaded() or "").startswith("cpu")

    behind = monitor(backlog=400)
    feed(behind, 4)
    assert (behind.overloaded() or "").startswith("audio backlog")

    off = monitor(enabled=False)
    feed(off, 4, lag=500, cpu=1.0)
    assert off.overloaded() is None


def test_auto_capacity_follows_the_measured_cost_of_a_job() -> None:
    m = monitor(max_cpu=0.8, auto_initial_jobs=3)
    assert m.capacity() == 3  # nothing measured yet
    feed(m, 4, cpu=0.05, jobs=0)  # idle: 5 % of the cores
    feed(m, 60, cpu=0.05 + 4 * 0.03, jobs=4)  # four jobs at 3 % each
    assert m.capacity() == int((0.8 - 0.05) / 0.03)


def request(job_id: str) -> JobRequest:
    return JobRequest(source="webhook", job_id=job_id, dispatch_id="AD", job_type="JT_ROOM",
                      room_name="r", access_token="tok", server_url="wss://lk.example.com")


async def hold(spec: Any, reporter: Any) -> JobOutcome:
    await asyncio.sleep(30)
    return JobOutcome(end_reason="done")


def manager_with(load: LoadMonitor, **settings: Any) -> JobManager:
    return JobManager(settings=make_settings(**settings), job_body=hold,
                      registry=MemoryJobRegistry(ttl=60, max_entries=100), metrics=Metrics(),
                      load=load)


async def test_an_overloaded_replica_answers_busy_with_retry_after_and_starts_nothing() -> None:
    load = monitor()
    m = manager_with(load)
    feed(load, 4, lag=300)
    result = await m.admit(request("AJ_1"))
    assert result.verdict == "busy" and result.error == OVERLOADED
    assert result.retry_after is not None and m.active_jobs == 0
    feed(load, 4, lag=0)  # the loop caught up
    assert (await m.admit(request("AJ_1"))).verdict == "accepted"
    await m.aclose()


async def test_max_jobs_auto_admits_up_to_the_measured_capacity() -> None:
    load = monitor(max_cpu=0.8)
    m = manager_with(load, max_jobs="auto")
    feed(load, 4, cpu=0.0, jobs=0)
    feed(load, 60, cpu=0.4, jobs=2)  # 20 % per job: 4 fit
    assert m.max_jobs == 4
    verdicts = [(await m.admit(request(f"AJ_{i}"))).verdict for i in range(5)]
    assert verdicts == ["accepted"] * 4 + ["busy"]
    await m.aclose()


# -- stale audio ------------------------------------------------------------------------------

def test_a_reader_within_its_limit_drops_nothing() -> None:
    guard = StaleAudioGuard(identity="a", max_backlog_ms=100)
    assert [guard.stale(q) for q in (0, 3, 10, 2)] == [False] * 4
    assert guard.dropped_frames == 0 and guard.backlog_ms == 20


def test_a_reader_past_its_limit_skips_to_the_newest_frame() -> None:
    shared = AudioBacklog()
    guard = StaleAudioGuard(identity="a", max_backlog_ms=100, backlog=shared)
    shared.add(guard)
    # 25 frames (250 ms) queued behind the one in hand: it and the next 24 go, the 26th is heard.
    queued = list(range(25, -1, -1))
    decisions = [guard.stale(q) for q in queued]
    assert decisions == [True] * 25 + [False]
    assert guard.dropped_frames == 25 and guard.drops == 1
    assert shared.dropped_ms == pytest.approx(250)
    assert shared.worst_ms == 0.0  # back in real time
    assert guard.stale(0) is False


class Slow(RoomListener):
    """A listener whose first frame blocks the event loop: the process fell behind."""

    def __init__(self) -> None:
        self.frames: list[int] = []

    def participant_joined(self, info: RemoteInfo) -> None: ...
    def participant_left(self, identity: str) -> None: ...
    def audio_track_subscribed(self, identity: str) -> None: ...
    def audio_track_unsubscribed(self, identity: str) -> None: ...

    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None: ...
    def data_received(self, identity: str | None, topic: str, payload: bytes) -> None: ...
    def connection_changed(self, state: Any) -> None: ...
    def disconnected(self, cause: Any, detail: str) -> None: ...

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        if not self.frames:
            time.sleep(0.6)
        self.frames.append(frame.samples_per_channel)


async def test_a_real_reader_that_fell_behind_drops_stale_frames_and_keeps_up() -> None:
    source = rtc.AudioSource(48000, 1, queue_size_ms=2000)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    listener = Slow()
    backlog = AudioBacklog()
    reader = AudioReader(track=track, identity="alice", listener=listener, max_backlog_ms=100,
                         backlog=backlog)
    silence = rtc.AudioFrame(bytes(960), 48000, 1, 480)
    try:
        for _ in range(150):  # 1.5 s of audio, faster than real time
            await source.capture_frame(silence)
        async with asyncio.timeout(5):
            while len(listener.frames) + reader.guard.dropped_frames < 100:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await reader.aclose()
        await source.aclose()
    assert reader.guard.drops >= 1
    assert reader.guard.dropped_frames * SDK_FRAME_MS >= 100
    assert backlog.dropped_ms == pytest.approx(reader.guard.dropped_frames * SDK_FRAME_MS)
    assert backlog.worst_ms == 0.0  # the closed reader left the process-wide view
