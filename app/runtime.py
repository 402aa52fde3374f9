"""What one running service holds: settings, metrics, the job manager and background services.

Built in the app's lifespan and put on ``app.state.runtime``; handlers reach it through the
dependencies in :mod:`app.api.deps`, never through a module global.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry

from agents.job import JobBody
from app.intake.pipeline import IntakePolicy
from app.jobs.health import HealthWatch
from app.jobs.load import LoadMonitor
from app.jobs.manager import JobManager
from app.jobs.registry import JobRegistry, MemoryJobRegistry, RedisJobRegistry
from app.metrics import Metrics
from app.security.failures import FailureLimiter
from app.settings import Settings

log = structlog.get_logger("app.runtime")


class BackgroundService(Protocol):
    """Something that runs beside the HTTP server for the life of the service (e.g. the native
    dispatch worker). ``start`` returns once it is running; ``aclose`` stops it, idempotently."""

    name: str

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


ServiceFactory = Callable[["Runtime"], BackgroundService]


class DeferredView(Protocol):
    """Rooms waiting for a slot (deferred native dispatch), for ``GET /jobs``."""

    async def snapshot(self) -> dict[str, Any]: ...


def build_registry(settings: Settings) -> JobRegistry:
    if settings.registry == "redis" and settings.redis_url is not None:
        return RedisJobRegistry.from_url(
            settings.redis_url.get_secret_value(),
            ttl=settings.idempotency_ttl,
            max_held=settings.idempotency_max,
        )
    return MemoryJobRegistry(ttl=settings.idempotency_ttl, max_entries=settings.idempotency_max)


def _backlog_reading(job_body: JobBody) -> Callable[[], float] | None:
    """The job body's ``audio_backlog_ms`` (the agent's readers), when it has one."""
    if not hasattr(job_body, "audio_backlog_ms"):
        return None
    return lambda: float(getattr(job_body, "audio_backlog_ms", 0.0))


def _health_reading(job_body: JobBody) -> Callable[[], str | None] | None:
    """The job body's ``health_problem`` (the agent's), when it has one."""
    if not hasattr(job_body, "health_problem"):
        return None
    return lambda: getattr(job_body, "health_problem", None)


class Runtime:
    def __init__(
        self,
        *,
        settings: Settings,
        job_body: JobBody,
        metrics: Metrics,
        registry: JobRegistry | None = None,
        request_exit: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.started_at = time.monotonic()
        self.registry = registry if registry is not None else build_registry(settings)
        self.load = LoadMonitor(
            settings=settings.load_limits,
            active_jobs=lambda: self.manager.active_jobs,
            audio_backlog_ms=_backlog_reading(job_body),
        )
        self.manager = JobManager(
            settings=settings,
            job_body=job_body,
            registry=self.registry,
            metrics=metrics,
            load=self.load,
        )
        self.intake_policy = IntakePolicy(
            secrets=tuple(settings.webhook_secrets),
            max_body_bytes=settings.max_body_bytes,
            timestamp_tolerance=settings.timestamp_tolerance,
        )
        self.job_body = job_body
        self.auth_failures = FailureLimiter(settings=settings.auth_failures)
        self.agent_metrics: tuple[CollectorRegistry, ...] = getattr(
            job_body, "metrics_registries", ()
        )
        self.services: list[BackgroundService] = []
        self.deferred: DeferredView | None = None
        """Set by the native dispatch worker when it defers refused rooms."""
        self.handover: Callable[[], Awaitable[None]] | None = None
        """Set by failover: at the drain deadline, running calls go to other replicas."""
        self.ready = False
        self._closed = False
        self.request_exit = request_exit
        """Set by the server: drain, then exit (``reason``); the orchestrator restarts us."""
        self.unhealthy: str | None = None
        """Why this replica takes no more jobs (the agent's ``health_problem``), once seen."""
        reading = _health_reading(job_body)
        self.health = (HealthWatch(problem=reading, on_problem=self._unhealthy)
                       if reading is not None else None)
        self._unhealthy_drain: asyncio.Task[None] | None = None

    def _unhealthy(self, problem: str) -> None:
        """A replica that cannot serve its callers takes no new job: it drains, and exits when
        the server runs it and ``restart_when_unhealthy`` is on."""
        self.unhealthy = problem
        self.metrics.unhealthy.set(1)
        restart = self.settings.restart_when_unhealthy and self.request_exit is not None
        log.error("replica_unhealthy", problem=problem,
                  action="drain and exit" if restart else "drain, keep running")
        if restart:
            assert self.request_exit is not None
            self.request_exit("unhealthy")
        elif self._unhealthy_drain is None and not self._closed:
            self._unhealthy_drain = asyncio.get_running_loop().create_task(
                self.drain(), name="runtime.unhealthy-drain")

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    async def start(self, factories: Sequence[ServiceFactory]) -> None:
        """Warm the job body's models, then start each background service in order; on a
        failure, stop the ones started."""
        prewarm = getattr(self.job_body, "prewarm", None)
        if prewarm is not None:
            started = time.monotonic()
            await prewarm()
            log.info("job_body_prewarmed", seconds=round(time.monotonic() - started, 2))
        await self.registry.start()
        await self.load.start()
        if self.health is not None:
            await self.health.start()
        for factory in factories:
            service = factory(self)
            try:
                await service.start()
            except BaseException:
                await self.aclose()
                raise
            self.services.append(service)
            log.info("background_service_started", service=service.name)
        self.ready = True

    async def drain(self) -> None:
        """SIGTERM: not ready at once, new offers busy, running jobs get ``drain_timeout``."""
        self.ready = False
        await self.manager.drain(grace=self.settings.drain_timeout, before_cancel=self.handover)

    async def aclose(self) -> None:
        """Stop background services (last started first), then every job. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.ready = False
        self.manager.start_draining()
        for service in reversed(self.services):
            try:
                await service.aclose()
            except Exception:
                log.exception("background_service_close_failed", service=service.name)
        self.services.clear()
        if self.health is not None:
            await self.health.aclose()
        drain, self._unhealthy_drain = self._unhealthy_drain, None
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
        await self.manager.aclose()
        await self.load.aclose()
        aclose = getattr(self.job_body, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                log.exception("job_body_close_failed")
