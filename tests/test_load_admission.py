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
from room_kit import AudioListener

from agents.job import JobOutcome
from agents.transport.audio_reader import SDK_FRAME_MS, AudioReader
from agents.transport.backlog import AudioBacklog, StaleAudioGuard
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
    feed(m, 12, cpu=0.05, jobs=0)  # idle: 5 % of the cores
    feed(m, 60, cpu=0.05 + 4 * 0.03, jobs=4)  # four jobs at 3 % each
    assert m.capacity() == int((0.8 - 0.05) / 0.03)


def test_auto_capacity_learns_from_settled_unthrottled_jobs_only() -> None:
    m = monitor(max_cpu=0.8, auto_initial_jobs=50, auto_job_cost=0.1)
    assert m.capacity() == 16  # 0.8 of 2 cores at the assumed 0.1 core a job
    feed(m, 12, cpu=0.05, jobs=0)
    # A burst: the job count changes every sample (joins cost more than listening): not learned.
    for jobs in range(1, 9):
        m.record(loop_lag_ms=0, cpu=0.05 + jobs * 0.001, jobs=jobs)
    assert m.capacity() == 15  # still the assumed cost (less the idle share)
    feed(m, 40, cpu=1.0, jobs=8)  # throttled: used less than wanted, so not learned either
    assert m.capacity() == 15
    feed(m, 60, cpu=0.05 + 8 * 0.05, jobs=8)  # settled, below the throttle: 5 % a job
    assert m.capacity() == int((0.8 - 0.05) / 0.05)


def test_a_cpu_quota_is_the_budget_a_burst_fits_in() -> None:
    """A container limited to a quarter of a core takes what fits in ``max_cpu`` of it at 0.1
    core a job before any is measured, not ``auto_initial_jobs``."""
    m = LoadMonitor(settings=LoadSettings(auto_initial_jobs=4, auto_job_cost=0.1),
                    active_jobs=lambda: 0, cores=0.25)
    assert m.capacity() == 1  # 0.7 of 0.25 core
    m = LoadMonitor(settings=LoadSettings(auto_initial_jobs=4, auto_job_cost=0.1, max_cpu=0.85),
                    active_jobs=lambda: 0, cores=0.25)
    assert m.capacity() == 2
    assert m.snapshot()["cores"] == 0.25


def test_usable_cores_follow_a_cgroup_quota_changed_while_running() -> None:
    cores = [2.0]
    m = LoadMonitor(settings=LoadSettings(sample_interval=0.25, max_cpu=0.8),
                    active_jobs=lambda: 0, cores_reading=lambda: cores[0])
    feed(m, 12, cpu=0.02, jobs=0)  # idle: 2 % of 2 cores = 0.04 core
    cores[0] = 0.5
    m._reread_cores()
    assert m.snapshot()["cores"] == 0.5
    # the same 0.04 core is now 8 % of the budget: 0.72 left at the assumed 0.1 core (20 %)
    assert m.capacity() == 3


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_cgroup_quota_is_read_along_the_path_and_the_smallest_binds(
    tmp_path: Any, layout: str
) -> None:
    from app.jobs.cores import cgroup_quota_cores

    proc = tmp_path / "cgroup"
    if layout == "v1":
        proc.write_text("4:memory:/pod\n3:cpu,cpuacct:/pod/box\n")
        base = tmp_path / "cpu,cpuacct"
        for folder, quota in ((base / "pod", "150000"), (base / "pod" / "box", "-1"), (base, "-1")):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpu.cfs_quota_us").write_text(quota)
            (folder / "cpu.cfs_period_us").write_text("100000")
        assert cgroup_quota_cores(proc_cgroup=proc, root=tmp_path) == 1.5
    else:
        proc.write_text("0::/pod/box\n")
        for folder, limit in ((tmp_path / "pod", "max 100000"),
                              (tmp_path / "pod" / "box", "25000 100000")):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpu.max").write_text(limit)
        assert cgroup_quota_cores(proc_cgroup=proc, root=tmp_path) == 0.25
    (tmp_path / "none").write_text("0::/\n")
    assert cgroup_quota_cores(proc_cgroup=tmp_path / "none", root=tmp_path / "empty") is None


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


class Slow(AudioListener):
    """A listener whose first frame blocks the event loop: the process fell behind."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.gaps: list[tuple[int, float]] = []

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        if not self.frames:
            time.sleep(0.6)
        self.frames.append(frame.samples_per_channel)

    def audio_gap(self, identity: str, ms: float) -> None:
        self.gaps.append((len(self.frames), ms))


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
    # The listener was told, before the first frame after each drop, how much it did not hear.
    assert sum(ms for _, ms in listener.gaps) == reader.guard.dropped_frames * SDK_FRAME_MS
    assert all(0 < at < len(listener.frames) for at, _ in listener.gaps)
