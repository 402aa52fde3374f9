"""The intake's metrics are cheap on the hot path and expose exactly what prometheus_client's own
Counter, Gauge and Histogram would: checked against a reference registry fed the same events."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.metrics import SOURCES, Metrics

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCIES = [0.0, 0.0004, 0.0005, 0.00050001, 0.003, 0.099, 0.1, 1.0, 2.5, 0.02]


class Reference:
    """The metrics as plain prometheus_client objects, updated per event."""

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
        self.active = Gauge(
            "external_agent_active_jobs",
            "Jobs running now (accepted, connecting or running), by source.",
            ["source"],
            registry=self.registry,
        )
        Gauge("external_agent_max_jobs", "Configured job capacity.", registry=self.registry)
        Gauge("external_agent_draining", "1 while the service drains.", registry=self.registry)
        Gauge(
            "external_agent_unhealthy",
            "1 once the agent reported that this replica cannot serve (audio_not_decoded): it "
            "takes no new job and drains.", registry=self.registry,
        )
        Gauge(
            "external_agent_job_slots_utilization",
            "Share of this replica's job slots in use, 0 to 1: running jobs, reservations and "
            "offers being decided over max_jobs (the autoscaling signal).",
            registry=self.registry,
        )
        self.latency = Histogram(
            "external_agent_accept_latency_seconds",
            "Time from receiving an offer to answering it, by door (source).",
            ["source"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        Gauge(
            "external_agent_deferred_dispatches",
            "Rooms waiting for a free slot (native dispatches refused for capacity).",
            registry=self.registry,
        )
        Counter(
            "external_agent_deferred_dispatch_events",
            "Deferred native dispatch, by outcome: deferred, already_waiting, full, reissued, "
            "served (by another worker), gone (room or dispatch), expired, failed.",
            ["outcome"],
            registry=self.registry,
        )
        Gauge(
            "external_agent_failover_leases",
            "Jobs whose failover lease this replica holds.",
            registry=self.registry,
        )
        Counter(
            "external_agent_failover_events",
            "Failover, by outcome: taken_over, room_gone, not_adopted, unreadable (a lost job "
            "claimed here), lease_lost (a job stopped here), handed_over (drain).",
            ["outcome"],
            registry=self.registry,
        )
        for s in SOURCES:
            self.active.labels(source=s)
            self.latency.labels(source=s)
            for state in ("accepted", "connecting", "running", "completed", "failed", "cancelled"):
                self.jobs.labels(source=s, state=state)


def exposition(registry: CollectorRegistry) -> str:
    # Creation times differ between the two registries; everything else must not.
    text = generate_latest(registry).decode()
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text)


def feed(metrics: Metrics, ref: Reference, round_: int) -> None:
    for outcome in ("accepted", "accepted", "duplicate", "bad_signature", "busy")[round_:]:
        metrics.webhook(outcome)
        ref.webhooks.labels(outcome=outcome).inc()
    for source, state in [
        ("webhook", "accepted"),
        ("webhook", "completed"),
        ("dispatch", "failed"),
    ]:
        metrics.job_state(source, state)
        ref.jobs.labels(source=source, state=state).inc()
    for source, delta in [("webhook", 1), ("webhook", 1), ("webhook", -1), ("dispatch", -1)]:
        metrics.job_active(source, delta)
        ref.active.labels(source=source).inc(delta)
    metrics.job_started("livekit_webhook")
    metrics.job_ended("livekit_webhook", "cancelled")
    for state, delta in [("accepted", 1), ("cancelled", -1)]:
        ref.jobs.labels(source="livekit_webhook", state=state).inc()
        ref.active.labels(source="livekit_webhook").inc(delta)
    for i, seconds in enumerate(LATENCIES):
        source = SOURCES[i % len(SOURCES)]
        metrics.accepted_in(source, seconds)
        ref.latency.labels(source=source).observe(seconds)


def test_exposition_is_prometheus_clients_for_the_same_events():
    metrics, ref = Metrics(), Reference()
    assert exposition(metrics.registry) == exposition(ref.registry)  # all series at zero
    feed(metrics, ref, 0)
    first = exposition(metrics.registry)
    assert first == exposition(ref.registry)
    assert 'external_agent_webhooks_total{outcome="accepted"} 2.0' in first
    assert 'external_agent_active_jobs{source="dispatch"} -1.0' in first
    # Counts made after a collection are folded in at the next one, once.
    assert exposition(metrics.registry) == first
    feed(metrics, ref, 2)
    assert 'external_agent_webhooks_total{outcome="duplicate"} 2.0' in metrics.render().decode()
    assert exposition(metrics.registry) == exposition(ref.registry)


def test_latency_buckets_follow_prometheus_bounds():
    metrics, ref = Metrics(), Reference()
    for seconds in (0.0005, 0.001, 1.0, 1.0000001, float("inf")):
        metrics.accepted_in("webhook", seconds)
        ref.latency.labels(source="webhook").observe(seconds)
    assert exposition(metrics.registry) == exposition(ref.registry)
