"""What a running job body talks to (:class:`Reporter`), and who else hears about a job's life
(:class:`JobObserver`: failover keeps its lease and checkpoints through it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from agents.job import JobSpec, RunningState
from app.jobs.records import JobRecord, JobState

log = structlog.get_logger("app.jobs")


class JobObserver(Protocol):
    """Told when a job starts and every time its body checkpoints. Calls never block or raise."""

    def job_started(self, job: JobRecord, spec: JobSpec) -> None: ...

    def job_checkpoint(self, job: JobRecord, state: dict[str, Any]) -> None: ...


class Reporter:
    """The :class:`agents.job.JobReporter` handed to one body. Never blocks or raises."""

    __slots__ = ("_enter", "_job", "_observer")

    def __init__(
        self,
        *,
        job: JobRecord,
        enter: Callable[[JobRecord, JobState, str | None], None],
        observer: JobObserver | None,
    ) -> None:
        self._job = job
        self._enter = enter
        self._observer = observer

    def state(self, state: RunningState, *, detail: str | None = None) -> None:
        if state not in ("connecting", "running"):
            log.warning("job_state_ignored", state=str(state))
            return
        self._enter(self._job, state, detail)

    def record(self, key: str, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            log.warning("job_record_not_json", key=key, value_type=type(value).__name__)
            value = repr(value)
        self._job.record[str(key)] = value

    def event(self, kind: str, data: dict[str, Any]) -> None:
        job = self._job
        job.live.append(kind, data)
        if kind == "handoff" and job.handoff is None:
            job.handoff = data

    def checkpoint(self, state: dict[str, Any]) -> None:
        if self._observer is None or self._job.finished:
            return
        try:
            self._observer.job_checkpoint(self._job, state)
        except Exception:
            log.exception("job_checkpoint_failed")
