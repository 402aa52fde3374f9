"""The job manager: one decision path for every door, and the owner of every job task.

States: ``accepted → connecting → running → completed | failed | cancelled``, each with a
timestamp, the final one with a reason. Every job body runs in a task named ``job-<job_id>`` held
here; cancellation, the drain deadline and :meth:`JobManager.aclose` cancel and await it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agents.job import JobBody, JobFailed, JobOutcome, JobSpec
from app.admission import AT_CAPACITY, OVERLOADED, AdmissionResult, JobRequest
from app.errors import TokenMintError
from app.jobs.load import LoadMonitor
from app.jobs.offers import agent_answer, agent_token, job_record, job_spec
from app.jobs.policy import offer_problem, server_url_problem
from app.jobs.records import JobRecord, JobState, StoredAnswer
from app.jobs.registry import JobRegistry, MemoryJobRegistry, RegistryError
from app.jobs.reporter import JobObserver, Reporter
from app.metrics import Metrics
from app.settings import Settings

log = structlog.get_logger("app.jobs")

JobEndCallback = Callable[[str, JobState, "str | None"], None]


@dataclass(slots=True)
class _Reservation:
    request: JobRequest
    answer: StoredAnswer
    expiry: asyncio.Task[None]


class JobManager:
    """Implements :class:`app.admission.Admission`."""

    def __init__(
        self,
        *,
        settings: Settings,
        job_body: JobBody,
        registry: JobRegistry,
        metrics: Metrics,
        cancel_grace: float = 10.0,
        load: LoadMonitor | None = None,
    ) -> None:
        self._settings = settings
        self._load = load
        self._body = job_body
        self._registry = registry
        # The in-memory store answers without suspending: an offer is then decided in one
        # synchronous step, so nothing can interleave and no in-flight marker is needed. Only
        # the exact class: a subclass may override the async methods, and goes the general way.
        self._local = registry if type(registry) is MemoryJobRegistry else None
        # Resolved once: the module's lazy proxy would be resolved again on every call.
        self._log = log.bind()
        self._metrics = metrics
        self._cancel_grace = cancel_grace
        self._jobs: dict[str, JobRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._history: OrderedDict[str, JobRecord] = OrderedDict()
        self._reservations: dict[str, _Reservation] = {}
        self._inflight: dict[str, asyncio.Future[AdmissionResult]] = {}
        self._end_callbacks: list[JobEndCallback] = []
        self._observer: JobObserver | None = None
        self._draining = False
        self._closed = False
        metrics.capacity.set_function(lambda: self.max_jobs)
        metrics.track_slots(lambda: self.used_slots, lambda: self.max_jobs)

    # -- read-only state -------------------------------------------------------------------

    @property
    def active_jobs(self) -> int:
        """Jobs started and not finished."""
        return len(self._jobs)

    @property
    def max_jobs(self) -> int:
        """The configured capacity, or with ``max_jobs: auto`` the measured one."""
        configured = self._settings.max_jobs
        if configured != "auto":
            return configured
        if self._load is None:
            return self._settings.load_limits.auto_initial_jobs
        return self._load.capacity()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def used_slots(self) -> int:
        """Running jobs plus reservations plus offers being decided."""
        return len(self._jobs) + len(self._reservations) + len(self._inflight)

    def on_job_end(self, callback: JobEndCallback) -> None:
        """Call ``callback(job_id, final_state, reason)`` whenever a job finishes."""
        self._end_callbacks.append(callback)

    def observe(self, observer: JobObserver) -> None:
        """Tell ``observer`` when each job starts and checkpoints (failover; one observer)."""
        self._observer = observer

    @property
    def has_free_slot(self) -> bool:
        return not self._draining and self.used_slots < self.max_jobs

    def adopt(self, request: JobRequest, *, resume: dict[str, Any],
              legs: list[dict[str, Any]]) -> str | None:
        """Start a job another replica lost (failover): same ``job_id``, a token minted here,
        the body going on from ``resume``. The claim was made in the failover store, not the
        registry (which still holds the first answer). ``None`` when started, else why not."""
        if not self.has_free_slot:
            return "draining" if self._draining else AT_CAPACITY
        if request.job_id in self._jobs:
            return "already running here"
        answer = agent_answer(self._settings, request.job_id)
        server_url = request.server_url or self._settings.livekit_url or ""
        problem = server_url_problem(self._settings, server_url)
        if problem is not None:
            return problem
        try:
            token = agent_token(self._settings, request, answer)
        except TokenMintError as e:
            return e.message
        self._history.pop(request.job_id, None)
        job = self._start(request, answer, access_token=token, server_url=server_url,
                          resume=resume, legs=legs)
        self._log.info("job_adopted", job_id=job.job_id, room=job.room_name, legs=len(legs))
        return None

    def close_adopted(self, request: JobRequest, *, legs: list[dict[str, Any]],
                      reason: str) -> JobRecord:
        """Record a lost job that cannot go on (its room is gone): it ends here, with its legs."""
        job = job_record(request, agent_answer(self._settings, request.job_id))
        job.legs = legs
        self._finish(job, "completed", reason, {})
        return job

    def get_job(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id) or self._history.get(job_id)

    def list_jobs(self) -> list[JobRecord]:
        """Running jobs first, then finished ones, newest first."""
        finished = list(reversed(self._history.values()))
        return [*self._jobs.values(), *finished]

    # -- Admission -------------------------------------------------------------------------

    async def admit(self, request: JobRequest) -> AdmissionResult:
        return await self._decide(request, hold=None)

    async def reserve(self, request: JobRequest, *, hold_seconds: float) -> AdmissionResult:
        return await self._decide(request, hold=max(0.0, hold_seconds))

    async def start_reserved(self, job_id: str, *, access_token: str, server_url: str) -> bool:
        reservation = self._reservations.get(job_id)
        if reservation is None:
            return False
        # The reservation keeps its slot counted until the job holds it: from here to _start
        # there is no await, so no other offer can see the slot free in between.
        await self._stop_expiry(reservation)
        if self._reservations.get(job_id) is not reservation:
            return False  # released or expired meanwhile
        del self._reservations[job_id]
        request = dataclasses.replace(
            reservation.request, access_token=access_token, server_url=server_url
        )
        problem = "draining" if self._draining else server_url_problem(self._settings, server_url)
        if problem is not None:
            log.warning("reservation_not_started", job_id=job_id, reason=problem)
            await self._forget(job_id)
            return False
        self._start(request, reservation.answer, access_token=access_token, server_url=server_url)
        return True

    async def release(self, job_id: str) -> None:
        reservation = self._reservations.pop(job_id, None)
        if reservation is None:
            return
        await self._stop_expiry(reservation)
        await self._forget(job_id)

    async def cancel(self, job_id: str, *, reason: str) -> bool:
        if job_id in self._reservations:
            await self.release(job_id)
            return True
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return False
        self._cancel_reasons.setdefault(job_id, reason)
        task.cancel()
        await asyncio.wait({task}, timeout=self._cancel_grace)
        self._reap(job_id)
        return True

    # -- lifecycle of the manager ----------------------------------------------------------

    def start_draining(self) -> None:
        """Refuse new offers from now on (``busy``); running jobs go on."""
        if not self._draining:
            self._draining = True
            self._metrics.draining.set(1)
            log.info("drain_started", active_jobs=len(self._jobs))

    async def drain(
        self, *, grace: float, before_cancel: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Stop accepting, give running jobs up to ``grace`` seconds, then (after
        ``before_cancel``: failover hands them over) cancel the rest and await them."""
        self.start_draining()
        for job_id in list(self._reservations):
            await self.release(job_id)
        pending = set(self._tasks.values())
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
        if before_cancel is not None and self._tasks:
            await before_cancel()
        await self._cancel_all("drain deadline")
        log.info("drain_finished")

    async def aclose(self) -> None:
        """Cancel everything still running and close the registry. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.start_draining()
        for job_id in list(self._reservations):
            await self.release(job_id)
        await self._cancel_all("service shutdown")
        await self._registry.aclose()

    async def _cancel_all(self, reason: str) -> None:
        running = {job_id: t for job_id, t in self._tasks.items() if not t.done()}
        if not running:
            return
        for job_id, task in running.items():
            self._cancel_reasons.setdefault(job_id, reason)
            task.cancel()
        _, stuck = await asyncio.wait(running.values(), timeout=self._cancel_grace)
        if stuck:
            log.error("jobs_did_not_stop", jobs=sorted(t.get_name() for t in stuck))
            await asyncio.wait(stuck)
        for job_id in running:
            self._reap(job_id)

    # -- the decision ----------------------------------------------------------------------

    def _refuse(self, request: JobRequest, error: str) -> AdmissionResult:
        self._log.info("job_refused", job_id=request.job_id, room=request.room_name, error=error)
        return AdmissionResult(verdict="refused", job_id=request.job_id, error=error)

    def _busy(self, request: JobRequest, error: str) -> AdmissionResult:
        return AdmissionResult(
            verdict="busy",
            job_id=request.job_id,
            error=error,
            retry_after=self._settings.retry_after,
        )

    @staticmethod
    def _result(verdict: str, job_id: str, answer: StoredAnswer) -> AdmissionResult:
        return AdmissionResult(
            verdict="accepted" if verdict == "accepted" else "duplicate",
            job_id=job_id,
            participant_identity=answer.participant_identity,
            participant_name=answer.participant_name,
            participant_metadata=answer.participant_metadata,
        )

    async def _decide(self, request: JobRequest, *, hold: float | None) -> AdmissionResult:
        job_id = request.job_id
        problem = offer_problem(self._settings, request)
        if problem is None and hold is None:  # a reservation gets both with its assignment
            if request.access_token is None and not self._settings.can_mint_tokens:
                problem = (
                    "the offer has no access_token and no LIVEKIT_API_KEY / LIVEKIT_API_SECRET "
                    "are configured to mint one"
                )
            else:
                url = request.server_url or self._settings.livekit_url
                problem = server_url_problem(self._settings, url)
        if problem is not None:
            return self._refuse(request, problem)

        pending = self._inflight.get(job_id)
        if pending is not None:  # the same offer is being decided right now
            first = await asyncio.shield(pending)
            if first.accepted:
                return dataclasses.replace(first, verdict="duplicate")
            return first
        if job_id in self._jobs or job_id in self._history or job_id in self._reservations:
            return self._result("duplicate", job_id, agent_answer(self._settings, job_id))
        local = self._local
        if local is not None:
            stored = local.lookup(job_id)
        else:
            try:
                stored = await self._registry.get(job_id)
            except RegistryError as e:
                return self._busy(request, e.message)
        if stored is not None:
            return self._result("duplicate", job_id, stored)

        if self._draining:
            return self._busy(request, "draining")
        if self.used_slots >= self.max_jobs:
            return self._busy(request, AT_CAPACITY)
        overload = self._load.overloaded() if self._load is not None else None
        if overload is not None:
            self._log.info("job_refused_overloaded", job_id=job_id, reason=overload)
            return self._busy(request, OVERLOADED)

        if local is not None:  # nothing from the checks to the claim suspends
            return await self._claim_and_start(request, hold=hold)
        future: asyncio.Future[AdmissionResult] = asyncio.get_running_loop().create_future()
        self._inflight[job_id] = future
        result: AdmissionResult | None = None
        try:
            result = await self._claim_and_start(request, hold=hold)
            return result
        finally:
            del self._inflight[job_id]
            # Duplicates waiting on this decision get it; if it was interrupted, they are told
            # to retry rather than left waiting.
            future.set_result(result or self._busy(request, "admission interrupted"))

    async def _claim_and_start(self, request: JobRequest, *, hold: float | None) -> AdmissionResult:
        job_id = request.job_id
        answer = agent_answer(self._settings, job_id)
        if self._local is not None:
            first = self._local.claim_now(job_id, answer)
        else:
            try:
                first = await self._registry.claim(job_id, answer)
            except RegistryError as e:
                return self._busy(request, e.message)
        if first is not None:
            return self._result("duplicate", job_id, first)
        if hold is not None:
            expiry = asyncio.create_task(self._expire(job_id, hold), name=f"reserve-{job_id}")
            self._reservations[job_id] = _Reservation(request=request, answer=answer, expiry=expiry)
            log.info("job_reserved", job_id=job_id, room=request.room_name, hold=hold)
            return self._result("accepted", job_id, answer)
        server_url = request.server_url or self._settings.livekit_url or ""
        try:
            token = request.access_token or agent_token(self._settings, request, answer)
        except TokenMintError as e:
            await self._forget(job_id)
            return self._refuse(request, e.message)
        self._start(request, answer, access_token=token, server_url=server_url)
        return self._result("accepted", job_id, answer)

    async def _expire(self, job_id: str, hold: float) -> None:
        await asyncio.sleep(hold)
        if self._reservations.pop(job_id, None) is not None:
            log.info("reservation_expired", job_id=job_id)
            await self._forget(job_id)

    async def _stop_expiry(self, reservation: _Reservation) -> None:
        task = reservation.expiry
        if task is asyncio.current_task() or task.done():
            return
        task.cancel()
        await asyncio.wait({task})

    async def _forget(self, job_id: str) -> None:
        try:
            await self._registry.forget(job_id)
        except RegistryError as e:
            log.warning("registry_forget_failed", job_id=job_id, error=e.message)

    # -- running a job ---------------------------------------------------------------------

    def _start(
        self, request: JobRequest, answer: StoredAnswer, *, access_token: str, server_url: str,
        resume: dict[str, Any] | None = None, legs: list[dict[str, Any]] | None = None,
    ) -> JobRecord:
        spec = job_spec(request, answer, access_token=access_token, server_url=server_url,
                        resume=resume)
        job_id = request.job_id
        job = job_record(request, answer)
        job.legs = list(legs or ())
        self._jobs[job_id] = job
        self._metrics.job_started(job.source)
        if self._observer is not None:
            self._observer.job_started(job, spec)
        # _run forgets its own task when it ends; _reap covers a task cancelled before it ran.
        self._tasks[job_id] = asyncio.get_running_loop().create_task(
            self._run(job, spec), name=f"job-{job_id}"
        )
        return job

    def _reap(self, job_id: str) -> None:
        """Finish a job whose task was cancelled before its first step (so ``_run`` never ran
        and never will): its record and its capacity slot must not be left behind."""
        task = self._tasks.get(job_id)
        if task is None or not task.done():
            return
        del self._tasks[job_id]
        job = self._jobs.get(job_id)
        if job is not None:
            with structlog.contextvars.bound_contextvars(
                job_id=job_id, room=job.room_name, dispatch_id=job.dispatch_id
            ):
                reason = self._cancel_reasons.get(job_id, "cancelled")
                self._finish(job, "cancelled", reason, {})

    def _enter(self, job: JobRecord, state: JobState, *, detail: str | None = None) -> None:
        if job.move(state, detail=detail):
            self._metrics.job_state(job.source, state)
            self._log.info("job_state", state=state, detail=detail)

    async def _run(self, job: JobRecord, spec: JobSpec) -> None:
        structlog.contextvars.bind_contextvars(
            job_id=job.job_id, room=job.room_name, dispatch_id=job.dispatch_id
        )
        self._log.info("job_accepted", source=job.source, job_type=job.job_type)
        reporter = Reporter(job=job, observer=self._observer,
                            enter=lambda j, state, detail: self._enter(j, state, detail=detail))
        try:
            outcome = await self._body(spec, reporter)
        except JobFailed as e:
            self._finish(job, "failed", e.reason, e.record)
        except asyncio.CancelledError:
            self._finish(job, "cancelled", self._cancel_reasons.get(job.job_id, "cancelled"), {})
            raise
        except Exception as e:
            log.exception("job_body_crashed")
            self._finish(job, "failed", f"internal error: {type(e).__name__}", {})
        else:
            if isinstance(outcome, JobOutcome):
                self._finish(job, "completed", outcome.end_reason, outcome.record)
            else:
                reason = f"job body returned {type(outcome).__name__}, not JobOutcome"
                self._finish(job, "failed", reason, {})
        finally:
            self._tasks.pop(job.job_id, None)

    def _finish(self, job: JobRecord, state: JobState, reason: str, record: dict[str, Any]) -> None:
        if isinstance(record, dict):
            job.record.update(record)
        if not job.move(state, reason=reason):
            return
        self._jobs.pop(job.job_id, None)
        self._cancel_reasons.pop(job.job_id, None)
        self._metrics.job_ended(job.source, state)
        if self._settings.job_history > 0:
            self._history[job.job_id] = job
            while len(self._history) > self._settings.job_history:
                self._history.popitem(last=False)
        self._log.info("job_finished", state=state, reason=reason)
        for callback in list(self._end_callbacks):
            try:
                callback(job.job_id, state, reason)
            except Exception:
                log.exception("job_end_callback_failed")
