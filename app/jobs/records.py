"""What the service knows about one job, and the answer it gave for it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.job import JobSource, JobType
from app.jobs.live import LiveLog

JobState = Literal["accepted", "connecting", "running", "completed", "failed", "cancelled"]
TERMINAL_STATES: frozenset[JobState] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The first answer given for a ``job_id``; a retry gets it again."""

    participant_identity: str
    participant_name: str
    participant_metadata: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "participant_identity": self.participant_identity,
                "participant_name": self.participant_name,
                "participant_metadata": self.participant_metadata,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> StoredAnswer:
        data = json.loads(raw)
        return cls(
            participant_identity=str(data["participant_identity"]),
            participant_name=str(data["participant_name"]),
            participant_metadata=str(data["participant_metadata"]),
        )


@dataclass(kw_only=True, slots=True)
class JobRecord:
    """One job's lifecycle. Mutated only by the job manager, on the event loop."""

    job_id: str
    dispatch_id: str
    source: JobSource
    job_type: JobType
    room_name: str
    room_sid: str
    participant_identity: str | None
    agent_identity: str
    state: JobState = "accepted"
    reason: str | None = None
    detail: str | None = None
    created_at: float = field(default_factory=time.time)
    state_times: dict[str, float] = field(default_factory=dict)
    ended_at: float | None = None
    record: dict[str, Any] = field(default_factory=dict)
    live: LiveLog = field(default_factory=LiveLog, repr=False)
    """The running job's data messages, for operators following it (closed when it ends)."""
    handoff: dict[str, Any] | None = None
    """The agent's ``handoff`` message, when it handed the call to a person."""
    handoff_handled_at: float | None = None
    """When an operator marked the handoff as dealt with (the console's queue)."""
    legs: list[dict[str, Any]] = field(default_factory=list)
    """With failover: each replica that ran the job (``replica``, fencing ``token``, ``started_at``,
    and for a lost leg ``lost_at``), then the gap until the next one took over (``gap_s``)."""

    def __post_init__(self) -> None:
        self.state_times.setdefault("accepted", self.created_at)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def move(
        self, state: JobState, *, reason: str | None = None, detail: str | None = None
    ) -> bool:
        """Enter ``state``; ``False`` (and nothing changes) once the job has finished."""
        if self.finished:
            return False
        now = time.time()
        self.state = state
        self.state_times[state] = now
        if reason is not None:
            self.reason = reason
        if detail is not None:
            self.detail = detail
        if state in TERMINAL_STATES:
            self.ended_at = now
            self.live.close()
        return True

    def summary(self) -> dict[str, Any]:
        """Public view without the body's record (``GET /jobs``). Never holds a token."""
        return {
            "job_id": self.job_id,
            "dispatch_id": self.dispatch_id,
            "source": self.source,
            "job_type": self.job_type,
            "room": self.room_name,
            "room_sid": self.room_sid,
            "participant_identity": self.participant_identity,
            "agent_identity": self.agent_identity,
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail,
            "created_at": self.created_at,
            "state_times": dict(self.state_times),
            "ended_at": self.ended_at,
            "handoff": self.handoff,
            "handoff_handled_at": self.handoff_handled_at,
            "legs": [dict(leg) for leg in self.legs],
        }

    def full(self) -> dict[str, Any]:
        """``GET /jobs/{id}``: the summary plus the body's record."""
        return {**self.summary(), "record": dict(self.record)}
