"""Prometheus metrics of the vision path. One :class:`VisionMetrics` per registry. Jobs use
:func:`default_vision_metrics`, created on first use in :data:`VISION_REGISTRY`, a registry of
its own (nothing is added to prometheus' global one); the service exposes it by appending
``generate_latest(VISION_REGISTRY)`` to its ``/metrics`` answer. Tests pass their own."""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Histogram

VISION_REGISTRY = CollectorRegistry(auto_describe=True)

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class VisionMetrics:
    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.stage_seconds = Histogram(
            "agent_vision_stage_seconds",
            "Time from frame capture to each stage of a vision description.",
            ["stage"], buckets=_STAGE_BUCKETS, registry=registry,
        )
        self.frames = Counter(
            "agent_vision_frames_total",
            "Video frames by what happened to them: sampled, skipped (between samples), "
            "superseded (replaced before conversion), converted, or failed.",
            ["source", "outcome"], registry=registry,
        )
        self.decisions = Counter(
            "agent_vision_decisions_total",
            "Decisions of the standalone vision pipeline on a sampled image.",
            ["decision"], registry=registry,
        )


@functools.cache
def default_vision_metrics() -> VisionMetrics:
    """The process-wide vision metrics, in :data:`VISION_REGISTRY`."""
    return VisionMetrics(registry=VISION_REGISTRY)
