"""Prometheus metrics on a registry owned by one app instance (never the global default).

The per-event counts (webhooks by outcome, jobs by state, active jobs) are plain integers on the
hot path, folded into their Prometheus series whenever the registry is collected: one update per
series per scrape instead of a locked update per event. They are updated and collected on the
event loop (``GET /metrics`` is an async handler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from agents.job import JobSource

SOURCES: tuple[JobSource, ...] = ("webhook", "dispatch", "livekit_webhook")
JOB_STATES = ("accepted", "connecting", "running", "completed", "failed", "cancelled")


class _FlushingRegistry(CollectorRegistry):
    """A registry that folds pending counts into their series before every collection."""

    def __init__(self, flush: Callable[[], None]) -> None:
        super().__init__(auto_describe=True)
        self._flush = flush

    def collect(self) -> Iterable[Metric]:
        self._flush()
        return super().collect()


class Metrics:
    """Webhooks by outcome, jobs by state and source, active jobs, accept latency."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._pending: dict[Counter | Gauge, int] = {}
        self.registry: CollectorRegistry = _FlushingRegistry(self._flush)
        self.webhooks = Counter(
            "external_agent_webhooks",
            "Job notifications received, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "external_agent_jobs",
            "Jobs that entered a state, by source and state.",
            ["source", "state"],
            registry=self.registry,
        )
        self.active_jobs = Gauge(
            "external_agent_active_jobs",
            "Jobs running now (accepted, connecting or running), by source.",
            ["source"],
            registry=self.registry,
        )
        self.capacity = Gauge(
            "external_agent_max_jobs", "Configured job capacity.", registry=self.registry
        )
        self.draining = Gauge(
            "external_agent_draining", "1 while the service drains.", registry=self.registry
        )
        self.accept_latency = Histogram(
            "external_agent_accept_latency_seconds",
            "Time from receiving an offer to answering it, by door (source).",
            ["source"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        # Children resolved once: ``labels()`` takes a lock and builds a key on every call.
        self._active = {s: self.active_jobs.labels(source=s) for s in SOURCES}
        self._latency = {s: self.accept_latency.labels(source=s) for s in SOURCES}
        self._jobs = {
            (s, state): self.jobs.labels(source=s, state=state)
            for s in SOURCES
            for state in JOB_STATES
        }
        self._webhooks: dict[str, Counter] = {}

    def _count(self, child: Counter | Gauge, delta: int) -> None:
        pending = self._pending
        pending[child] = pending.get(child, 0) + delta

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for child, delta in pending.items():
            child.inc(delta)

    def webhook(self, outcome: str) -> None:
        child = self._webhooks.get(outcome)
        if child is None:
            child = self._webhooks[outcome] = self.webhooks.labels(outcome=outcome)
        self._count(child, 1)

    def job_state(self, source: JobSource, state: str) -> None:
        self._count(self._jobs[(source, state)], 1)

    def job_active(self, source: JobSource, delta: int) -> None:
        self._count(self._active[source], delta)

    def accepted_in(self, source: JobSource, seconds: float) -> None:
        self._latency[source].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
