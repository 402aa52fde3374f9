"""Prometheus metrics on a registry owned by one app instance (never the global default).

The per-event counts (webhooks by outcome, jobs by state, active jobs) are plain integers on the
hot path, folded into their Prometheus series whenever the registry is collected: one update per
series per scrape instead of a locked update per event. The accept latency histogram is a plain
one too (:class:`LatencyHistogram`). All of it is updated and collected on the event loop
(``GET /metrics`` is an async handler); the exposition is what prometheus_client's own Counter,
Gauge and Histogram would write.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import prometheus_client.metrics
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import INF, floatToGoString

from agents.job import JobSource

_le_label = cast(Callable[[float], str], floatToGoString)  # untyped in prometheus_client

SOURCES: tuple[JobSource, ...] = ("webhook", "dispatch", "livekit_webhook", "playground")
# Per-pod job-slot utilisation: the HorizontalPodAutoscaler's metric (deploy/k8s).
SLOTS_UTILIZATION = "external_agent_job_slots_utilization"
JOB_STATES = ("accepted", "connecting", "running", "completed", "failed", "cancelled")


class _FlushingRegistry(CollectorRegistry):
    """A registry that folds pending counts into their series before every collection."""

    def __init__(self, flush: Callable[[], None]) -> None:
        super().__init__(auto_describe=True)
        self._flush = flush

    def collect(self) -> Iterable[Metric]:
        self._flush()
        return super().collect()


@dataclass(slots=True)
class _Series:
    counts: list[int]
    """Per bucket, not cumulative."""
    sum: float
    created: float


class LatencyHistogram:
    """A histogram by one label whose values are known up front, for the event loop:
    :meth:`observe` is a bisect and two additions, where prometheus_client's Histogram takes a
    lock for the sum and for a bucket and walks the buckets in Python. Its exposition is that of
    a ``prometheus_client.Histogram`` with the same name, label, buckets and series."""

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        labelname: str,
        labelvalues: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelname = labelname
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds) or not bounds or bounds[0] < 0:
            raise ValueError("buckets must be sorted and non-negative")
        self._bounds = (*bounds, INF) if bounds[-1] != INF else tuple(bounds)
        self._le = tuple(_le_label(b) for b in self._bounds)
        created = time.time()
        self._series = {
            value: _Series(counts=[0] * len(self._bounds), sum=0.0, created=created)
            for value in labelvalues
        }
        registry.register(self)

    def observe(self, labelvalue: str, amount: float) -> None:
        series = self._series[labelvalue]
        series.counts[bisect_left(self._bounds, amount)] += 1
        series.sum += amount

    def collect(self) -> Iterable[Metric]:
        name = self._name
        metric = Metric(name, self._documentation, "histogram")
        created = prometheus_client.metrics._use_created  # PROMETHEUS_DISABLE_CREATED_SERIES
        for value, series in self._series.items():
            labels = {self._labelname: value}
            total = 0
            for le, count in zip(self._le, series.counts, strict=True):
                total += count
                metric.add_sample(name + "_bucket", {**labels, "le": le}, float(total))
            metric.add_sample(name + "_count", labels, float(total))
            metric.add_sample(name + "_sum", labels, series.sum)
            if created:
                metric.add_sample(name + "_created", labels, series.created)
        return [metric]


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
        self.unhealthy = Gauge(
            "external_agent_unhealthy",
            "1 once the agent reported that this replica cannot serve (audio_not_decoded): it "
            "takes no new job and drains.", registry=self.registry,
        )
        self.job_slots = Gauge(
            SLOTS_UTILIZATION,
            "Share of this replica's job slots in use, 0 to 1: running jobs, reservations and "
            "offers being decided over max_jobs (the autoscaling signal).",
            registry=self.registry,
        )
        self.accept_latency = LatencyHistogram(
            "external_agent_accept_latency_seconds",
            "Time from receiving an offer to answering it, by door (source).",
            labelname="source",
            labelvalues=SOURCES,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.deferred_waiting = Gauge(
            "external_agent_deferred_dispatches",
            "Rooms waiting for a free slot (native dispatches refused for capacity).",
            registry=self.registry,
        )
        self.deferred = Counter(
            "external_agent_deferred_dispatch_events",
            "Deferred native dispatch, by outcome: deferred, already_waiting, full, reissued, "
            "served (by another worker), gone (room or dispatch), expired, failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.failover_leases = Gauge(
            "external_agent_failover_leases",
            "Jobs whose failover lease this replica holds.",
            registry=self.registry,
        )
        self.failover = Counter(
            "external_agent_failover_events",
            "Failover, by outcome: taken_over, room_gone, not_adopted, unreadable (a lost job "
            "claimed here), lease_lost (a job stopped here), handed_over (drain).",
            ["outcome"],
            registry=self.registry,
        )
        # Children resolved once: ``labels()`` takes a lock and builds a key on every call.
        self._active = {s: self.active_jobs.labels(source=s) for s in SOURCES}
        self._jobs = {
            (s, state): self.jobs.labels(source=s, state=state)
            for s in SOURCES
            for state in JOB_STATES
        }
        self._webhooks: dict[str, Counter] = {}

    def track_slots(self, used: Callable[[], int], capacity: Callable[[], int]) -> None:
        """Report ``used() / capacity()`` as the job-slot utilisation, read at each scrape
        (the capacity moves with ``max_jobs: auto``)."""
        self.job_slots.set_function(lambda: used() / max(1, capacity()))

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for child, delta in pending.items():
            child.inc(delta)

    def webhook(self, outcome: str) -> None:
        child = self._webhooks.get(outcome)
        if child is None:
            child = self._webhooks[outcome] = self.webhooks.labels(outcome=outcome)
        self._pending[child] = self._pending.get(child, 0) + 1

    def job_state(self, source: JobSource, state: str) -> None:
        child = self._jobs[(source, state)]
        self._pending[child] = self._pending.get(child, 0) + 1

    def job_active(self, source: JobSource, delta: int) -> None:
        child = self._active[source]
        self._pending[child] = self._pending.get(child, 0) + delta

    def job_started(self, source: JobSource) -> None:
        """A job entered ``accepted`` and is now active."""
        pending = self._pending
        entered, active = self._jobs[(source, "accepted")], self._active[source]
        pending[entered] = pending.get(entered, 0) + 1
        pending[active] = pending.get(active, 0) + 1

    def job_ended(self, source: JobSource, state: str) -> None:
        """A job entered its final ``state`` and is no longer active."""
        pending = self._pending
        entered, active = self._jobs[(source, state)], self._active[source]
        pending[entered] = pending.get(entered, 0) + 1
        pending[active] = pending.get(active, 0) - 1

    def deferred_outcome(self, outcome: str, n: int = 1) -> None:
        self.deferred.labels(outcome=outcome).inc(n)

    def accepted_in(self, source: JobSource, seconds: float) -> None:
        self.accept_latency.observe(source, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
