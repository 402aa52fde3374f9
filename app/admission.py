"""One admission path, three doors.

The signed job webhook (``POST /livekit/agent``), LiveKit's native agent dispatch (the worker
websocket) and LiveKit's server webhooks (``POST /livekit/webhook``) all turn what they received
into a :class:`JobRequest` and ask the job manager, which implements :class:`Admission`, for a
decision. The decision rules (policy, idempotency on ``job_id``, capacity, draining) live in one
place, so every door answers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from agents.job import JobSource, JobType

Verdict = Literal["accepted", "duplicate", "refused", "busy"]
"""``accepted``: a new job; ``duplicate``: same ``job_id`` as an earlier accepted job (the first
answer is repeated, nothing new runs); ``refused``: policy says no (job type or agent disabled);
``busy``: no capacity or draining (the dispatcher should try another replica)."""


AT_CAPACITY = "at capacity"
"""The ``error`` of a ``busy`` answer given because every slot is taken (not draining, not a
store failure): native dispatch defers such rooms (:mod:`app.dispatch.redispatch`)."""

OVERLOADED = "overloaded"
"""The ``error`` of a ``busy`` answer given because measured load is over a limit (event-loop
lag, CPU, audio backlog; see :mod:`app.jobs.load`): deferred like :data:`AT_CAPACITY`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRequest:
    """A job offer from any door, before it is admitted."""

    source: JobSource
    job_id: str
    dispatch_id: str
    job_type: JobType
    room_name: str
    room_sid: str = ""
    participant_identity: str | None = None
    metadata: str = ""
    access_token: str | None = None
    """``None`` when the door carries no token yet (native dispatch before assignment, LiveKit
    webhooks): the service mints one, or receives it with the assignment."""
    server_url: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AdmissionResult:
    verdict: Verdict
    job_id: str
    participant_identity: str = ""
    participant_name: str = ""
    participant_metadata: str = ""
    error: str | None = None
    retry_after: int | None = None
    """Seconds, for ``busy``."""

    @property
    def accepted(self) -> bool:
        return self.verdict in ("accepted", "duplicate")


class Admission(Protocol):
    """What the doors need from the job manager."""

    async def admit(self, request: JobRequest) -> AdmissionResult:
        """Decide and, when accepted, start the job in the background at once (the caller
        answers its dispatcher before any room work happens). Needs a token and server URL in
        the request, or LiveKit API keys in the settings to mint one."""
        ...

    async def reserve(self, request: JobRequest, *, hold_seconds: float) -> AdmissionResult:
        """Decide and, when accepted, hold a capacity slot for ``job_id`` without starting
        anything (native dispatch: ``AvailabilityRequest``). The slot is released when
        :meth:`start_reserved` or :meth:`release` is called, or after ``hold_seconds``."""
        ...

    async def start_reserved(
        self, job_id: str, *, access_token: str, server_url: str
    ) -> bool:
        """Start a job reserved earlier (native dispatch: ``JobAssignment``). ``False`` when no
        such reservation is held (expired, released, unknown)."""
        ...

    async def release(self, job_id: str) -> None:
        """Give back a reservation that will not be started."""
        ...

    async def cancel(self, job_id: str, *, reason: str) -> bool:
        """Cancel a running job (``DELETE /jobs/{id}``, native ``JobTermination``). ``False`` when
        the job is unknown or already finished."""
        ...
