"""Prometheus metrics on a registry owned by one app instance (never the global default)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from agents.job import JobSource

SOURCES: tuple[JobSource, ...] = ("webhook", "dispatch", "livekit_webhook")
JOB_STATES = ("accepted", "connecting", "running", "completed", "failed", "cancelled")


class Metrics:
    """Webhooks by outcome, jobs by state and source, active jobs, accept latency."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def webhook(self, outcome: str) -> None:
        child = self._webhooks.get(outcome)
        if child is None:
            child = self._webhooks[outcome] = self.webhooks.labels(outcome=outcome)
        child.inc()

    def job_state(self, source: JobSource, state: str) -> None:
        self._jobs[(source, state)].inc()

    def job_active(self, source: JobSource, delta: int) -> None:
        self._active[source].inc(delta)

    def accepted_in(self, source: JobSource, seconds: float) -> None:
        self._latency[source].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
