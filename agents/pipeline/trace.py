"""Per-turn latency traces: structured log, Prometheus histograms, ``agent_metrics`` messages.

Stage times are milliseconds relative to the turn's origin: the end of user speech for a voice
turn, the arrival of the text for a text turn, the request for a spoken vision line.

Stages (each present only when it happened):
``end_of_speech`` (0), ``turn_decided`` (the silence window closed), ``final_transcript``,
``first_token`` (first model text or tool call), ``first_audio`` (first frame handed to the
room's audio output), ``playout_start`` (first frame estimated to reach the caller),
``interrupted``, ``done``.

The metrics live in :data:`PIPELINE_REGISTRY`, a registry of their own (no import-time side
effect on the global one). The service exposes them by including it in its ``/metrics`` answer,
e.g. ``generate_latest(REGISTRY) + generate_latest(PIPELINE_REGISTRY)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from agents.messages import AgentMetrics, agent_metrics, new_id
from agents.providers.base import monotonic_ms

log = structlog.get_logger("agents.pipeline.trace")

TurnKind = Literal["voice", "text", "vision"]

PIPELINE_REGISTRY = CollectorRegistry(auto_describe=True)

STAGE_SECONDS = Histogram(
    "agent_turn_stage_seconds",
    "Time from the start of a turn (end of user speech) to each pipeline stage.",
    ["stage", "kind"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    registry=PIPELINE_REGISTRY,
)
TURNS = Counter(
    "agent_turns_total", "Agent turns by kind and outcome.", ["kind", "outcome"],
    registry=PIPELINE_REGISTRY,
)
INTERRUPTIONS = Counter(
    "agent_interruptions_total",
    "User speech over the agent: true barge-ins and false interruptions.",
    ["kind"],
    registry=PIPELINE_REGISTRY,
)
PROVIDER_FAILURES = Counter(
    "agent_provider_failures_total", "Provider failures seen by the pipeline.", ["step"],
    registry=PIPELINE_REGISTRY,
)
AUDIO_NOT_DECODED = Counter(
    "agent_audio_not_decoded_total",
    "Subscribed microphones whose audio arrived and was never decoded (the agent was deaf to "
    "them; docs/livekit.md#deaf-jobs).",
    registry=PIPELINE_REGISTRY,
)


@dataclass(slots=True)
class TurnTrace:
    kind: TurnKind
    origin_ms: float = field(default_factory=monotonic_ms)
    turn_id: str = field(default_factory=lambda: new_id("TURN"))
    speaker: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    outcome: str = "answered"
    knowledge: dict[str, Any] | None = None
    """Approved knowledge used by the turn: ``{retrieval_ms, passages: [...]}``."""
    speculation: str | None = None
    """What became of the model's answer started at a pause (``turn.speculative_answer``):
    ``kept``, ``dropped`` (the speaker went on), ``tool`` (it wanted a tool: asked again once
    the turn ended), ``mismatch`` (the context changed), ``failed``; None: none was started."""

    def mark(self, stage: str, at_ms: float | None = None) -> None:
        """Record ``stage`` once (the first time it happens)."""
        if stage not in self.stages:
            at = monotonic_ms() if at_ms is None else at_ms
            self.stages[stage] = round(at - self.origin_ms, 2)

    def message(self) -> AgentMetrics:
        return agent_metrics(
            turn_id=self.turn_id, stages=dict(self.stages), kind=self.kind,
            interrupted=self.interrupted, knowledge=self.knowledge,
        )

    def record(self) -> dict[str, Any]:
        row = {
            "turn_id": self.turn_id, "kind": self.kind, "speaker": self.speaker,
            "stages": dict(self.stages), "interrupted": self.interrupted,
            "outcome": self.outcome,
        }
        if self.knowledge is not None:
            row["knowledge"] = self.knowledge
        if self.speculation is not None:
            row["speculation"] = self.speculation
        return row

    def observe(self) -> None:
        """Export to the histograms and the structured log (once, at the end of the turn)."""
        for stage, ms in self.stages.items():
            if stage != "end_of_speech":
                STAGE_SECONDS.labels(stage=stage, kind=self.kind).observe(max(0.0, ms) / 1000.0)
        TURNS.labels(kind=self.kind, outcome=self.outcome).inc()
        log.info(
            "turn_trace", turn_id=self.turn_id, kind=self.kind, speaker=self.speaker,
            outcome=self.outcome, interrupted=self.interrupted, stages=dict(self.stages),
            speculation=self.speculation,
        )


MAX_RECORD_ROWS = 1000
"""Rows kept per list of a job record (turns, transcript): the newest, for long calls."""


def append_capped(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Append ``row``, keeping only the newest :data:`MAX_RECORD_ROWS` rows."""
    rows.append(row)
    if len(rows) > MAX_RECORD_ROWS:
        del rows[: len(rows) - MAX_RECORD_ROWS]
