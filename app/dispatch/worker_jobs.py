"""The worker's side of the jobs: what the LiveKit server offered, assigned and terminated, and
the job statuses still to report. It outlives any one connection, so a reconnect neither loses
nor duplicates a job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog
from livekit.protocol import agent as pb

from app.admission import AT_CAPACITY, OVERLOADED, AdmissionResult
from app.dispatch.ports import InvalidJobError, JobManagerPort
from app.dispatch.protocol import availability_message, job_request_from_proto, job_status_message
from app.dispatch.redispatch import Redispatcher

log = structlog.get_logger("app.dispatch.worker")

_DEFERRABLE = (AT_CAPACITY, OVERLOADED)
"""Refusals whose rooms wait for a slot; draining, policy and store failures do not."""

Send = Callable[[pb.WorkerMessage], Awaitable[bool]]
"""Send on the current connection; ``False`` when there is none or the write failed."""


@dataclass(frozen=True, slots=True)
class _Reservation:
    """A slot held after answering ``available``, waiting for the assignment."""

    deadline: float
    answer: AdmissionResult


@dataclass(slots=True)
class _DispatchedJob:
    """A job this worker started (or is starting) for the LiveKit server."""

    answer: AdmissionResult | None


class DispatchedJobs:
    def __init__(
        self,
        *,
        manager: JobManagerPort,
        livekit_url: str,
        assignment_timeout: float,
        send: Send,
        wake: Callable[[], None],
        redispatcher: Redispatcher | None = None,
    ) -> None:
        self._manager = manager
        self._redispatcher = redispatcher
        self._livekit_url = livekit_url
        self._assignment_timeout = assignment_timeout
        self._send = send
        self._wake = wake
        self._pending: dict[str, _Reservation] = {}
        self._jobs: dict[str, _DispatchedJob] = {}
        self._outbox: dict[str, pb.UpdateJobStatus] = {}
        self._flush_lock = asyncio.Lock()
        self.closing = False
        """Set when the worker is closing: new offers are declined."""

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._jobs)

    @property
    def unsent(self) -> frozenset[str]:
        return frozenset(self._outbox)

    # -- offers, assignments, terminations ----------------------------------------------------

    async def on_availability(self, req: pb.AvailabilityRequest) -> None:
        job_id = req.job.id
        if self._redispatcher is not None:
            self._redispatcher.offered(req.job.dispatch_id)
        known = self._jobs.get(job_id)
        if known is not None:
            # A re-sent or resuming request for a job we already run: same answer, nothing new.
            await self._send(availability_message(job_id, known.answer))
            log.info("dispatch_availability_known_job", job_id=job_id, resuming=req.resuming)
            return
        result: AdmissionResult | None = None
        if self.closing:
            reason = "worker closing"
        else:
            try:
                request = job_request_from_proto(req.job)
                result = await self._manager.reserve(request, hold_seconds=self._assignment_timeout)
                reason = result.error or result.verdict
            except InvalidJobError as e:
                reason = e.message
            except Exception as e:  # the manager must not take the connection down
                log.exception("dispatch_reserve_failed", job_id=job_id)
                reason = f"admission error: {type(e).__name__}"
        if result is not None and result.verdict == "duplicate" and job_id not in self._pending:
            # The manager knows this job id but we are not running it: it ran here already.
            result, reason = None, "job id already handled by this worker"
        if result is not None and result.accepted:
            deadline = time.monotonic() + 2 * self._assignment_timeout
            self._pending[job_id] = _Reservation(deadline=deadline, answer=result)
        sent = await self._send(availability_message(job_id, result))
        if not sent and job_id in self._pending:
            await self.release(job_id)
        log.info(
            "dispatch_availability",
            job_id=job_id,
            dispatch_id=req.job.dispatch_id,
            agent_name=req.job.agent_name,
            room=req.job.room.name,
            available=bool(result and result.accepted),
            reason=reason,
            answered=sent,
        )
        if result is not None and result.verdict == "busy" and result.error in _DEFERRABLE:
            await self._defer(req.job)

    async def _defer(self, job: pb.Job) -> None:
        """A room job refused for capacity waits for a slot (room jobs only: a re-issued
        dispatch would also offer every participant's job again)."""
        if self._redispatcher is None or self.closing or job.type != pb.JT_ROOM:
            return
        await self._redispatcher.defer(
            room=job.room.name, agent_name=job.agent_name, metadata=job.metadata,
            dispatch_id=job.dispatch_id, job_id=job.id,
        )

    async def on_assignment(self, assignment: pb.JobAssignment) -> None:
        job = assignment.job
        job_id = job.id
        if job_id in self._jobs:
            log.warning("dispatch_assignment_duplicate", job_id=job_id)
            return
        reservation = self._pending.pop(job_id, None)
        url = assignment.url or self._livekit_url
        if not assignment.token:
            await self.release(job_id)
            self.queue_status(
                pb.UpdateJobStatus(
                    job_id=job_id, status=pb.JS_FAILED, error="assignment without a token"
                )
            )
            return
        # Registered before the first await, so a job ending at once is still reported.
        entry = _DispatchedJob(answer=reservation.answer if reservation else None)
        self._jobs[job_id] = entry
        error = ""
        try:
            started = await self._manager.start_reserved(
                job_id, access_token=assignment.token, server_url=url
            )
            if not started:
                # Reservation expired or unknown (e.g. re-assigned after our restart): the job
                # goes through admission again, with its token.
                request = replace(
                    job_request_from_proto(job), access_token=assignment.token, server_url=url
                )
                result = await self._manager.admit(request)
                entry.answer = result
                started = result.verdict == "accepted"
                error = result.error or f"not admitted ({result.verdict})"
        except InvalidJobError as e:
            started, error = False, e.message
        except Exception as e:
            log.exception("dispatch_start_failed", job_id=job_id)
            started, error = False, f"admission error: {type(e).__name__}"
        if not started:
            if self._jobs.get(job_id) is entry:
                del self._jobs[job_id]
            self.queue_status(pb.UpdateJobStatus(job_id=job_id, status=pb.JS_FAILED, error=error))
            log.warning("dispatch_assignment_refused", job_id=job_id, error=error)
            return
        if self._jobs.get(job_id) is entry and job_id not in self._outbox:
            self.queue_status(pb.UpdateJobStatus(job_id=job_id, status=pb.JS_RUNNING))
        log.info("dispatch_job_started", job_id=job_id, room=job.room.name, url=url)

    async def on_termination(self, term: pb.JobTermination) -> None:
        job_id = term.job_id
        if job_id in self._pending:
            await self.release(job_id)
            log.info("dispatch_reservation_terminated", job_id=job_id)
            return
        try:
            cancelled = await self._manager.cancel(
                job_id, reason="terminated by the LiveKit server"
            )
        except Exception:
            log.exception("dispatch_cancel_failed", job_id=job_id)
            return
        if not cancelled and self._jobs.pop(job_id, None) is not None:
            # The manager no longer knows it: report it over, so the server stops waiting.
            self.queue_status(pb.UpdateJobStatus(job_id=job_id, status=pb.JS_SUCCESS))
        log.info("dispatch_job_terminated", job_id=job_id, cancelled=cancelled)

    # -- job ends and the outbox --------------------------------------------------------------

    def on_job_end(self, job_id: str, final_state: str, reason: str | None) -> None:
        """The job manager's end callback (for jobs of every door; ours are picked out)."""
        if self._jobs.pop(job_id, None) is None:
            return  # not one of ours (another door) or already reported
        self.queue_status(job_status_message(job_id, final_state, reason))

    def queue_status(self, update: pb.UpdateJobStatus) -> None:
        """Keep ``update`` until a connection takes it; a later one for the job replaces it."""
        self._outbox[update.job_id] = update
        self._wake()

    async def flush(self) -> None:
        """Send the queued job statuses, in order, stopping at the first that cannot go."""
        async with self._flush_lock:
            for job_id, update in list(self._outbox.items()):
                if self._outbox.get(job_id) is not update:
                    continue
                if not await self._send(pb.WorkerMessage(update_job=update)):
                    return  # kept for the next connection
                if self._outbox.get(job_id) is update:
                    del self._outbox[job_id]

    # -- reservations -------------------------------------------------------------------------

    def prune_pending(self) -> None:
        """Forget reservations whose assignment never came (the manager released them)."""
        now = time.monotonic()
        for job_id, reservation in list(self._pending.items()):
            if reservation.deadline < now:
                del self._pending[job_id]

    async def release(self, job_id: str) -> None:
        self._pending.pop(job_id, None)
        try:
            await self._manager.release(job_id)
        except Exception:
            log.exception("dispatch_release_failed", job_id=job_id)

    async def release_all(self) -> None:
        for job_id in list(self._pending):
            await self.release(job_id)
