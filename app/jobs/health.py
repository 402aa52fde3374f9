"""The replica's health as the agent reports it, watched once a second.

The agent's job body may say why the replica should take no more jobs (its ``health_problem``:
``audio_not_decoded``, a job that receives its caller's audio and decodes none of it, which
means this process's audio pump is gone and every later job would be deaf too). The first
problem seen is handed to ``on_problem`` once; the runtime then stops taking jobs and, when
the server runs it, drains and exits so that the orchestrator starts a fresh process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from app.jobs.background import BackgroundLoop

log = structlog.get_logger("app.jobs.health")

INTERVAL = 1.0
"""Seconds between looks at the job body's ``health_problem``."""


class HealthWatch(BackgroundLoop):
    name = "health-watch"

    def __init__(self, *, problem: Callable[[], str | None],
                 on_problem: Callable[[str], None], interval: float = INTERVAL) -> None:
        self._problem = problem
        self._on_problem = on_problem
        self._interval = interval
        self.seen: str | None = None

    async def _run(self) -> None:
        while self.seen is None:
            await asyncio.sleep(self._interval)
            try:
                problem = self._problem()
            except Exception:  # a broken reading is logged, never the end of the watch
                log.exception("health_reading_failed")
                continue
            if problem:
                self.seen = problem
                self._on_problem(problem)
