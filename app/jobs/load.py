"""Measured load, for admission: a replica refuses (or defers) new jobs when its event loop lags,
its process uses the CPU it may use, or its jobs' audio falls behind, and not only at ``max_jobs``.
With ``max_jobs: auto`` the capacity itself comes from the measured cost of a job.

One :class:`LoadMonitor` per service, sampled by one task (``load-monitor``) every
``load_limits.sample_interval`` seconds:

- event-loop lag: how late the sampler's own sleep woke up (mean over ``window``);
- process CPU: process CPU seconds per wall second (all threads: the SDK's and onnxruntime's
  native threads count), as a share of the cores this process may use (its CPU affinity capped
  by its cgroup's CPU quota, a container's CPU limit: :mod:`app.jobs.cores`);
- audio backlog: the worst backlog of any job's audio reader, in ms (from the job body's
  ``audio_backlog_ms``, when it has one).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from pydantic import BaseModel, ConfigDict, Field

from app.jobs.background import BackgroundLoop
from app.jobs.cores import usable_cores

log = structlog.get_logger("app.jobs.load")

CORES_REREAD_S = 2.0
"""How often the usable cores (affinity, cgroup CPU quota) are read again (s)."""
SETTLE_S = 2.0
"""A job's cost is learned only once the number of jobs held still this long (s): a job that
is joining (connecting, loading) costs more than one that listens, one that ended costs nothing."""
SATURATED = 0.95
"""CPU share at which the process is throttled: what it used then is less than what its jobs
wanted, so such samples teach nothing about a job's cost."""


class LoadSettings(BaseModel):
    """``load_limits`` in ``config.yaml``: the measured limits admission also checks."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Refuse new jobs when a measured limit is passed.")
    max_loop_lag_ms: float = Field(
        100.0, gt=0, description="Event-loop lag (mean over the window) that refuses new jobs."
    )
    max_cpu: float = Field(
        0.7, gt=0, le=1.0,
        description="Process CPU, as a share of the cores it may use, that refuses new jobs "
        "(headroom for bursts: under a CPU quota, running near it throttles every job's audio).",
    )
    max_audio_backlog_ms: float = Field(
        200.0, gt=0, description="Audio backlog of any job that refuses new jobs (ms)."
    )
    sample_interval: float = Field(0.25, gt=0, le=10, description="Sampling period (s).")
    window: float = Field(3.0, gt=0, le=120, description="What a decision looks back on (s).")
    auto_initial_jobs: int = Field(
        4, ge=1, le=10_000,
        description="max_jobs: auto: capacity before any job's cost was measured.",
    )
    auto_job_cost: float = Field(
        0.1, gt=0, le=64,
        description="max_jobs: auto: cores one job is assumed to cost before its cost was "
        "measured (the capacity then is the fewer of this estimate and auto_initial_jobs).",
    )
    auto_max_jobs: int = Field(
        200, ge=1, le=10_000, description="max_jobs: auto: the capacity never goes above this."
    )


@dataclass(frozen=True, slots=True)
class LoadSample:
    at: float
    loop_lag_ms: float
    cpu: float
    """Share of the usable cores, over the last sample interval."""
    audio_backlog_ms: float
    jobs: int


class LoadMonitor(BackgroundLoop):
    """Samples the load; answers :meth:`overloaded` and :meth:`capacity` without suspending."""

    name = "load-monitor"

    def __init__(
        self,
        *,
        settings: LoadSettings,
        active_jobs: Callable[[], int],
        audio_backlog_ms: Callable[[], float] | None = None,
        cores: float | None = None,
        cores_reading: Callable[[], float] = usable_cores,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self._settings = settings
        self._active_jobs = active_jobs
        self._backlog = audio_backlog_ms
        self._fixed_cores = cores is not None
        self._cores_reading = cores_reading
        self._cores = cores or cores_reading()
        self._clock = clock
        self._cpu_clock = cpu_clock
        keep = max(2, math.ceil(settings.window / settings.sample_interval))
        self._samples: deque[LoadSample] = deque(maxlen=keep)
        self._idle_cpu: float | None = None
        """CPU share with no job running (smoothed), subtracted from a job's measured cost."""
        self._job_cost: float | None = None
        """CPU share one job costs (smoothed), for ``max_jobs: auto``."""
        self._steady_jobs = -1
        self._steady = 0
        """How many samples in a row saw ``_steady_jobs`` jobs."""
        self._last_reason: str | None = None

    # -- the decision inputs ------------------------------------------------------------------

    def overloaded(self) -> str | None:
        """Why no new job should start now (``None``: it may)."""
        if not self._settings.enabled or not self._samples:
            return None
        # Means over the window (lag) and the last second (CPU, backlog): a single late wake-up
        # (a collection, a model loading) or one busy sample is not overload; a loop late on
        # average, or a process busy for a second, is.
        s = self._settings
        recent = list(self._samples)
        lag = sum(x.loop_lag_ms for x in recent) / len(recent)
        if lag > s.max_loop_lag_ms:
            return f"event loop lag {lag:.0f} ms"
        tail = recent[-max(1, math.ceil(1.0 / s.sample_interval)):]
        cpu = sum(x.cpu for x in tail) / len(tail)
        if cpu > s.max_cpu:
            return f"cpu {cpu:.2f} of {self._cores} cores"
        backlog = sum(x.audio_backlog_ms for x in tail) / len(tail)
        if backlog > s.max_audio_backlog_ms:
            return f"audio backlog {backlog:.0f} ms"
        return None

    def capacity(self) -> int:
        """``max_jobs: auto``: how many jobs fit in ``max_cpu`` at the measured cost per job."""
        s = self._settings
        budget = s.max_cpu - (self._idle_cpu or 0.0)
        if self._job_cost is None or self._job_cost <= 0:
            # Before any measurement (a burst at start-up): the assumed cost, within the cores
            # this process may use (a container's CPU limit, not the node's cores).
            assumed = int(budget / (s.auto_job_cost / self._cores))
            return max(1, min(s.auto_initial_jobs, s.auto_max_jobs, assumed))
        return max(1, min(s.auto_max_jobs, int(budget / self._job_cost)))

    def snapshot(self) -> dict[str, float | int | str | None]:
        last = self._samples[-1] if self._samples else None
        return {
            "loop_lag_ms": round(self._samples[-1].loop_lag_ms, 1) if last else None,
            "cpu": round(last.cpu, 3) if last else None,
            "audio_backlog_ms": round(last.audio_backlog_ms, 1) if last else None,
            "cores": round(self._cores, 3),
            "job_cost_cpu": round(self._job_cost, 4) if self._job_cost else None,
            "overloaded": self.overloaded(),
        }

    # -- sampling -----------------------------------------------------------------------------

    def record(self, *, loop_lag_ms: float, cpu: float, jobs: int) -> LoadSample:
        """Add one sample (the sampler's; tests call it directly)."""
        backlog = 0.0
        if self._backlog is not None:
            try:
                backlog = float(self._backlog())
            except Exception:  # a reading must never take admission down
                log.exception("audio_backlog_reading_failed")
        sample = LoadSample(at=self._clock(), loop_lag_ms=loop_lag_ms, cpu=cpu,
                            audio_backlog_ms=backlog, jobs=jobs)
        self._samples.append(sample)
        self._learn_cost(sample)
        reason = self.overloaded()
        if reason != self._last_reason:
            self._last_reason = reason
            if reason is None:
                log.info("load_normal", jobs=jobs)
            else:
                log.warning("load_over_limit", reason=reason, jobs=jobs)
        return sample

    def _reread_cores(self) -> None:
        """The CPU quota can change while the process runs (a resized pod)."""
        try:
            cores = self._cores_reading()
        except Exception:  # a reading must never take admission down
            log.exception("usable_cores_reading_failed")
            return
        if abs(cores - self._cores) > 1e-3:
            log.info("usable_cores_changed", cores=round(cores, 3), was=round(self._cores, 3))
            # What was learned is a share of the old cores: the same CPU time, new share.
            scale = self._cores / cores
            if self._idle_cpu is not None:
                self._idle_cpu *= scale
            if self._job_cost is not None:
                self._job_cost *= scale
            self._steady = 0
            self._cores = cores

    def _learn_cost(self, sample: LoadSample, alpha: float = 0.1) -> None:
        if sample.jobs != self._steady_jobs:
            self._steady_jobs, self._steady = sample.jobs, 0
        self._steady += 1
        if self._steady < max(1, math.ceil(SETTLE_S / self._settings.sample_interval)):
            return  # jobs starting or ending: their cost is not a listening job's
        if sample.jobs == 0:
            self._idle_cpu = sample.cpu if self._idle_cpu is None else (
                (1 - alpha) * self._idle_cpu + alpha * sample.cpu)
            return
        if sample.cpu >= SATURATED:
            return
        per_job = max(0.0, sample.cpu - (self._idle_cpu or 0.0)) / sample.jobs
        self._job_cost = per_job if self._job_cost is None else (
            (1 - alpha) * self._job_cost + alpha * per_job)

    async def _run(self) -> None:
        interval = self._settings.sample_interval
        wall, cpu = self._clock(), self._cpu_clock()
        reread = max(1, math.ceil(CORES_REREAD_S / interval))
        n = 0
        while True:
            await asyncio.sleep(interval)
            n += 1
            if not self._fixed_cores and n % reread == 0:
                self._reread_cores()
            now, cpu_now = self._clock(), self._cpu_clock()
            elapsed = max(1e-6, now - wall)
            self.record(
                loop_lag_ms=max(0.0, (elapsed - interval) * 1000.0),
                cpu=(cpu_now - cpu) / elapsed / self._cores,
                jobs=self._active_jobs(),
            )
            wall, cpu = now, cpu_now
