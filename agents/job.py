"""The one door between the service (``app``) and what runs inside a job (``agents``).

The service admits a job (from any of its three doors: the signed job webhook, LiveKit's native
agent dispatch, LiveKit's own webhooks), builds a :class:`JobSpec` and calls a :data:`JobBody`
with it and a :class:`JobReporter`. The body runs for the life of the job and returns a
:class:`JobOutcome`; it raises :class:`JobFailed` with a human-readable reason when the job cannot
do its work (the room could not be joined, the token is invalid, providers keep failing). The
service owns the task the body runs in: cancelling it is how a job is cancelled or drained.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JobType = Literal["JT_ROOM", "JT_PUBLISHER", "JT_PARTICIPANT"]
JOB_TYPES: tuple[JobType, ...] = ("JT_ROOM", "JT_PUBLISHER", "JT_PARTICIPANT")

JOB_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_\-.:@]{0,127}$"
"""The one rule for job ids at every door: ASCII letters, digits and ``_-.:@``, 1 to 128
characters, not starting with ``.``, ``-``, ``:`` or ``@`` (so never ``.`` or ``..``, never a
``/``): every id the service accepts can be written in a URL path (``/jobs/{id}``)."""
_JOB_ID = re.compile(JOB_ID_PATTERN)


def valid_job_id(job_id: str) -> bool:
    return _JOB_ID.fullmatch(job_id) is not None


JobSource = Literal["webhook", "dispatch", "livekit_webhook", "playground"]
"""Which door a job came through: our signed job webhook, LiveKit native agent dispatch, a
LiveKit server webhook matched by a dispatch rule, or the browser playground's session."""

# States a body reports while it runs; the service adds accepted / completed / failed / cancelled.
RunningState = Literal["connecting", "running"]


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """Everything a job body needs to know about one job. Built by the service, read-only."""

    job_id: str
    dispatch_id: str
    job_type: JobType
    room_name: str
    room_sid: str = ""
    participant_identity: str | None = None
    """Target participant of ``JT_PUBLISHER`` / ``JT_PARTICIPANT``; ``None`` for ``JT_ROOM``."""
    metadata: str = ""
    """Opaque dispatcher metadata; may be a JSON object with per-job overrides (an allowlist)."""
    server_url: str
    access_token: str
    """Always set: the notification's token, or one the service minted with its API keys."""
    agent_identity: str
    agent_name: str
    agent_metadata: str
    source: JobSource = "webhook"
    resume: dict[str, Any] | None = None
    """Set when this job continues after its replica was lost (failover): the last checkpoint
    the body handed to :meth:`JobReporter.checkpoint` in the earlier leg, as it handed it (the
    service stores it and never reads it). The body goes on from there instead of starting
    afresh; ``{}`` when the earlier leg died before its first checkpoint."""


class JobReporter(Protocol):
    """How a running body tells the service what is happening. Calls never block or raise."""

    def state(self, state: RunningState, *, detail: str | None = None) -> None:
        """The job moved to ``connecting`` (dialling the room) or ``running`` (in the room)."""

    def record(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable piece of the job's record (shown by ``GET /jobs/{id}``)."""

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """A live event while the job runs, for operators following it (the console): every
        data message the agent publishes (``kind`` is its type, ``data`` its JSON payload) and
        every ``user_text`` it receives. Kept in a bounded window; never part of the record."""

    def checkpoint(self, state: dict[str, Any]) -> None:
        """The job's state to go on from if its replica is lost (JSON-serialisable; the latest
        replaces the earlier ones). Given back as :attr:`JobSpec.resume` to the leg that takes
        the job over; ignored unless the service runs with failover."""


@dataclass(kw_only=True, slots=True)
class JobOutcome:
    """What a body returns when its job ends normally (the participant left on its own terms)."""

    end_reason: str
    """Why the job ended, e.g. ``participant_left``, ``room_closed``, ``call_ended``."""
    record: dict[str, Any] = field(default_factory=dict)
    """The job's record: transcript, todo list, timings, traces. JSON-serialisable."""


class JobFailed(Exception):
    """The job could not do its work. ``reason`` is short and safe to show to operators."""

    def __init__(self, reason: str, *, record: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record or {}


JobBody = Callable[[JobSpec, JobReporter], Awaitable[JobOutcome]]
"""The entry point the service calls once per admitted job.

Cancellation (``asyncio.CancelledError``) means the job was cancelled or the drain deadline
passed: the body must leave the room cleanly (unpublish, disconnect) and re-raise.
"""
