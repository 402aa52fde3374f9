"""A scripted job manager for the LiveKit-door tests: the real admission decisions (policy,
idempotency on ``job_id``, capacity, draining, reservations) without running anything."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.job import JobType
from app.admission import AT_CAPACITY, AdmissionResult, JobRequest
from app.dispatch.ports import JobEndCallback, JobManagerPort


@dataclass
class FakeJob:
    request: JobRequest
    access_token: str
    server_url: str
    state: str = "running"
    reason: str | None = None


@dataclass
class FakeJobManager(JobManagerPort):
    capacity: int = 4
    is_draining: bool = False
    enabled_types: set[JobType] = field(
        default_factory=lambda: {"JT_ROOM", "JT_PUBLISHER", "JT_PARTICIPANT"}
    )
    requests: list[JobRequest] = field(default_factory=list)
    reservations: dict[str, JobRequest] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    answers: dict[str, AdmissionResult] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    cancels: list[tuple[str, str]] = field(default_factory=list)
    callbacks: list[JobEndCallback] = field(default_factory=list)
    reserve_gate: asyncio.Event | None = None
    """When set, ``reserve`` holds its slot and then waits for this event before answering."""

    # -- JobManagerPort -----------------------------------------------------------------------

    @property
    def active_jobs(self) -> int:
        running = sum(1 for j in self.jobs.values() if j.state == "running")
        return running + len(self.reservations)

    @property
    def used_slots(self) -> int:
        return self.active_jobs

    @property
    def max_jobs(self) -> int:
        return self.capacity

    @property
    def draining(self) -> bool:
        return self.is_draining

    def on_job_end(self, callback: JobEndCallback) -> object:
        self.callbacks.append(callback)
        return None

    async def admit(self, request: JobRequest) -> AdmissionResult:
        result = self._decide(request)
        if result.verdict == "accepted":
            self._start(request, request.access_token or "minted", request.server_url or "")
        return result

    async def reserve(self, request: JobRequest, *, hold_seconds: float) -> AdmissionResult:
        assert hold_seconds > 0
        result = self._decide(request)
        if result.verdict == "accepted":
            self.reservations[request.job_id] = request
        if self.reserve_gate is not None:
            await self.reserve_gate.wait()
        return result

    async def start_reserved(self, job_id: str, *, access_token: str, server_url: str) -> bool:
        request = self.reservations.pop(job_id, None)
        if request is None:
            return False
        self._start(request, access_token, server_url)
        return True

    async def release(self, job_id: str) -> None:
        if self.reservations.pop(job_id, None) is not None:
            self.released.append(job_id)

    async def cancel(self, job_id: str, *, reason: str) -> bool:
        self.cancels.append((job_id, reason))
        job = self.jobs.get(job_id)
        if job is None or job.state != "running":
            return False
        self.finish(job_id, "cancelled", reason)
        return True

    # -- scripting ----------------------------------------------------------------------------

    def finish(self, job_id: str, state: str, reason: str | None = None) -> None:
        job = self.jobs[job_id]
        job.state, job.reason = state, reason
        for cb in self.callbacks:
            cb(job_id, state, reason)

    def expire(self, job_id: str) -> None:
        """The reservation's hold time passed."""
        self.reservations.pop(job_id, None)

    def _decide(self, request: JobRequest) -> AdmissionResult:
        self.requests.append(request)
        if request.job_id in self.answers:
            first = self.answers[request.job_id]
            return AdmissionResult(
                verdict="duplicate",
                job_id=first.job_id,
                participant_identity=first.participant_identity,
                participant_name=first.participant_name,
                participant_metadata=first.participant_metadata,
            )
        if request.job_type not in self.enabled_types:
            return AdmissionResult(
                verdict="refused", job_id=request.job_id, error=f"{request.job_type} disabled"
            )
        if self.is_draining or self.active_jobs >= self.capacity:
            error = "draining" if self.is_draining else AT_CAPACITY
            return AdmissionResult(
                verdict="busy", job_id=request.job_id, error=error, retry_after=5
            )
        result = AdmissionResult(
            verdict="accepted",
            job_id=request.job_id,
            participant_identity=f"ai-agent-{request.job_id}",
            participant_name="AI Assistant",
            participant_metadata='{"type":"ai"}',
        )
        self.answers[request.job_id] = result
        return result

    def _start(self, request: JobRequest, token: str, url: str) -> None:
        self.starts.append(request.job_id)
        self.jobs[request.job_id] = FakeJob(request=request, access_token=token, server_url=url)


async def eventually(pred: Callable[[], bool], *, within: float = 5.0, step: float = 0.005) -> None:
    """Wait until ``pred()`` holds (polling the event loop), failing after ``within`` seconds."""
    for _ in range(max(1, int(within / step))):
        if pred():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not met in time")
