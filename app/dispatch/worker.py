"""Native agent dispatch: the service registers with a LiveKit server as an agent worker.

One websocket to ``<livekit.url>/agent`` carrying ``WorkerMessage`` / ``ServerMessage``
protobufs. ``AvailabilityRequest`` -> :meth:`Admission.reserve` -> ``AvailabilityResponse``;
``JobAssignment`` -> :meth:`Admission.start_reserved`; ``JobTermination`` ->
:meth:`Admission.cancel`; every job end -> ``UpdateJobStatus``; ``UpdateWorkerStatus`` on an
interval and on every change; ``WorkerPing`` with a pong deadline.

Jobs belong to the job manager, not to the connection: when the socket drops, jobs keep running,
the worker reconnects with capped exponential backoff and re-registers, then sends the status of
the jobs that ended meanwhile (an outbox kept across connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog
from google.protobuf.message import DecodeError
from livekit.protocol import agent as pb

from app.admission import AdmissionResult
from app.dispatch.config import WorkerSettings
from app.dispatch.ports import (
    DispatchError,
    InvalidJobError,
    JobManagerPort,
    WorkerConnectionError,
    WorkerProtocolError,
)
from app.dispatch.protocol import (
    agent_ws_url,
    availability_message,
    job_request_from_proto,
    job_status_message,
    register_message,
    worker_status_message,
    worker_token,
)

log = structlog.get_logger("app.dispatch.worker")


@dataclass(frozen=True, slots=True)
class _Reservation:
    """A slot held after answering ``available``, waiting for the assignment."""

    deadline: float
    answer: AdmissionResult


@dataclass(slots=True)
class _DispatchedJob:
    """A job this worker started (or is starting) for the LiveKit server."""

    answer: AdmissionResult | None


def backoff_delay(attempt: int, *, initial: float, cap: float, jitter: float = 0.5) -> float:
    """Delay before reconnect ``attempt`` (1-based): ``initial * 2**(attempt-1)`` capped at
    ``cap``, scaled down by up to ``jitter`` so replicas do not reconnect in lockstep."""
    base = min(cap, initial * float(2 ** max(0, min(attempt - 1, 30))))
    return base * (1.0 - jitter * random.random())


class AgentWorker:
    """The agent worker client. ``start()`` returns at once; ``aclose()`` is idempotent and
    leaves running jobs to the job manager (drain them first to report their ends)."""

    name = "livekit-agent-worker"

    def __init__(
        self,
        *,
        manager: JobManagerPort,
        settings: WorkerSettings,
        livekit_url: str,
        api_key: str,
        api_secret: str,
    ) -> None:
        if not api_key or not api_secret:
            raise ValueError("the worker needs the LiveKit api_key and api_secret")
        self._manager = manager
        self._settings = settings
        self._livekit_url = livekit_url
        self._url = agent_ws_url(livekit_url)
        self._api_key = api_key
        self._api_secret = api_secret

        self._session: aiohttp.ClientSession | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._worker_id: str | None = None
        self._registered = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._last_pong = 0.0
        self._pending: dict[str, _Reservation] = {}
        self._jobs: dict[str, _DispatchedJob] = {}
        self._outbox: dict[str, pb.UpdateJobStatus] = {}
        self._failure: DispatchError | None = None
        self._last_status: tuple[int, int, bool] | None = None

    # -- public -------------------------------------------------------------------------------

    @property
    def worker_id(self) -> str | None:
        """The id the server gave at the last registration; ``None`` while not registered."""
        return self._worker_id if self._registered.is_set() else None

    @property
    def running(self) -> bool:
        return self._run_task is not None and not self._run_task.done()

    @property
    def failure(self) -> DispatchError | None:
        """Set when the worker gave up (``reconnect_max_attempts`` reached)."""
        return self._failure

    @property
    def dispatched_jobs(self) -> frozenset[str]:
        """Ids of the jobs this worker started and whose end it has not seen yet."""
        return frozenset(self._jobs)

    async def wait_registered(self) -> str:
        """Wait until registered with the server; returns the worker id."""
        await self._registered.wait()
        assert self._worker_id is not None
        return self._worker_id

    def status_changed(self) -> None:
        """Send ``UpdateWorkerStatus`` now (call when draining starts or capacity changes)."""
        self._wakeup.set()

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("worker is closed")
        if self._run_task is not None:
            raise RuntimeError("worker already started")
        self._session = aiohttp.ClientSession()
        self._manager.on_job_end(self._on_job_end)
        self._run_task = asyncio.create_task(self._run(), name="dispatch-worker")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._registered.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._flush_outbox()
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for job_id in list(self._pending):
            await self._release(job_id)
        if self._session is not None:
            await self._session.close()
        if self._outbox:
            log.warning("worker_closed_with_unsent_status", jobs=sorted(self._outbox))
        log.info("worker_closed", url=self._url)

    # -- connection lifecycle -----------------------------------------------------------------

    async def _run(self) -> None:
        s = self._settings
        attempt = 0
        while True:
            try:
                ws, reg = await self._connect()
            except DispatchError as e:
                attempt += 1
                if s.reconnect_max_attempts and attempt >= s.reconnect_max_attempts:
                    self._failure = e
                    log.error("worker_gave_up", url=self._url, attempts=attempt, error=e.message)
                    return
                delay = backoff_delay(
                    attempt, initial=s.reconnect_initial_delay, cap=s.reconnect_max_delay
                )
                log.warning(
                    "worker_connect_failed",
                    url=self._url,
                    attempt=attempt,
                    retry_in=round(delay, 2),
                    error=e.message,
                )
                await asyncio.sleep(delay)
                continue

            connected_at = time.monotonic()
            try:
                await self._serve(ws, reg)
            except DispatchError as e:
                log.warning("worker_connection_lost", url=self._url, error=e.message)
            finally:
                self._registered.clear()
                self._ws = None
                await ws.close()
            # A connection that stayed up a while resets the backoff; a flapping one does not.
            if time.monotonic() - connected_at >= s.reconnect_max_delay:
                attempt = 0
            attempt += 1
            await asyncio.sleep(
                backoff_delay(attempt, initial=s.reconnect_initial_delay, cap=s.reconnect_max_delay)
            )

    async def _connect(self) -> tuple[aiohttp.ClientWebSocketResponse, pb.RegisterWorkerResponse]:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {worker_token(self._api_key, self._api_secret)}"}
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self._settings.connect_timeout):
                ws = await self._session.ws_connect(self._url, headers=headers, autoping=True)
                await ws.send_bytes(register_message(self._settings).SerializeToString())
                raw = await ws.receive()
        except aiohttp.WSServerHandshakeError as e:
            raise WorkerConnectionError(f"handshake refused with HTTP {e.status}") from e
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            if ws is not None:
                await ws.close()
            raise WorkerConnectionError(f"connect failed: {type(e).__name__}: {e}") from e
        try:
            if raw.type != aiohttp.WSMsgType.BINARY:
                raise WorkerProtocolError(f"expected a binary register answer, got {raw.type!r}")
            msg = pb.ServerMessage.FromString(raw.data)
            if msg.WhichOneof("message") != "register":
                raise WorkerProtocolError("first server message is not a RegisterWorkerResponse")
        except (DecodeError, WorkerProtocolError) as e:
            await ws.close()
            if isinstance(e, WorkerProtocolError):
                raise
            raise WorkerProtocolError("register answer does not parse") from e
        return ws, msg.register

    async def _serve(
        self, ws: aiohttp.ClientWebSocketResponse, reg: pb.RegisterWorkerResponse
    ) -> None:
        self._ws = ws
        self._worker_id = reg.worker_id
        self._last_pong = time.monotonic()
        self._registered.set()
        log.info(
            "worker_registered",
            worker_id=reg.worker_id,
            url=self._url,
            agent_name=self._settings.agent_name,
            region=reg.server_info.region,
            running_jobs=len(self._jobs),
            unsent_status=len(self._outbox),
        )
        await self._flush_outbox()
        await self._send_status()
        tasks = [
            asyncio.create_task(self._recv_loop(ws), name="dispatch-worker-recv"),
            asyncio.create_task(self._ping_loop(), name="dispatch-worker-ping"),
            asyncio.create_task(self._status_loop(), name="dispatch-worker-status"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
        raise WorkerConnectionError("connection ended")

    async def _recv_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for raw in ws:
            if raw.type == aiohttp.WSMsgType.BINARY:
                self._on_server_message(raw.data)
            elif raw.type == aiohttp.WSMsgType.ERROR:
                raise WorkerConnectionError(f"websocket error: {ws.exception()!r}")
            else:
                log.warning("worker_unexpected_frame", frame_type=str(raw.type))
        raise WorkerConnectionError(f"closed by the server (code {ws.close_code})")

    async def _ping_loop(self) -> None:
        s = self._settings
        while True:
            await asyncio.sleep(s.ping_interval)
            if time.monotonic() - self._last_pong > s.ping_timeout:
                raise WorkerConnectionError(f"no pong for {s.ping_timeout:g}s")
            now_ms = int(time.time() * 1000)
            await self._send(pb.WorkerMessage(ping=pb.WorkerPing(timestamp=now_ms)))

    async def _status_loop(self) -> None:
        """Flush job ends and send the worker status: at once when woken, when the manager's
        load or draining flag changed (checked every second: jobs from the other doors count
        too), and every ``status_interval`` regardless."""
        interval = self._settings.status_interval
        last_sent = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, interval)):
                    await self._wakeup.wait()
            woken = self._wakeup.is_set()
            self._wakeup.clear()
            self._prune_pending()
            await self._flush_outbox()
            due = time.monotonic() - last_sent >= interval
            if woken or due or self._status_snapshot() != self._last_status:
                await self._send_status()
                last_sent = time.monotonic()

    # -- server messages ----------------------------------------------------------------------

    def _on_server_message(self, data: bytes) -> None:
        try:
            msg = pb.ServerMessage.FromString(data)
        except DecodeError:
            log.warning("worker_bad_message", size=len(data))
            return
        which = msg.WhichOneof("message")
        if which == "availability":
            job_id = msg.availability.job.id
            self._spawn(
                self._answer_availability(msg.availability), f"dispatch-availability-{job_id}"
            )
        elif which == "assignment":
            job_id = msg.assignment.job.id
            self._spawn(self._on_assignment(msg.assignment), f"dispatch-assignment-{job_id}")
        elif which == "termination":
            job_id = msg.termination.job_id
            self._spawn(self._on_termination(msg.termination), f"dispatch-termination-{job_id}")
        elif which == "pong":
            self._last_pong = time.monotonic()
        elif which == "go_away":
            raise WorkerConnectionError(f"server asked to go away: {msg.go_away.reason}")
        else:
            log.warning("worker_unhandled_message", kind=which)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._handlers.add(task)
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker_handler_failed", task=task.get_name(), error=repr(task.exception()))

    async def _answer_availability(self, req: pb.AvailabilityRequest) -> None:
        job_id = req.job.id
        known = self._jobs.get(job_id)
        if known is not None:
            # A re-sent or resuming request for a job we already run: same answer, nothing new.
            await self._send(availability_message(job_id, known.answer))
            log.info("dispatch_availability_known_job", job_id=job_id, resuming=req.resuming)
            return
        result: AdmissionResult | None = None
        if self._closed:
            reason = "worker closing"
        else:
            try:
                request = job_request_from_proto(req.job)
                result = await self._manager.reserve(
                    request, hold_seconds=self._settings.assignment_timeout
                )
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
            deadline = time.monotonic() + 2 * self._settings.assignment_timeout
            self._pending[job_id] = _Reservation(deadline=deadline, answer=result)
        sent = await self._send(availability_message(job_id, result))
        if not sent and job_id in self._pending:
            await self._release(job_id)
        log.info(
            "dispatch_availability",
            job_id=job_id,
            dispatch_id=req.job.dispatch_id,
            room=req.job.room.name,
            available=bool(result and result.accepted),
            reason=reason,
            answered=sent,
        )

    async def _on_assignment(self, assignment: pb.JobAssignment) -> None:
        job = assignment.job
        job_id = job.id
        if job_id in self._jobs:
            log.warning("dispatch_assignment_duplicate", job_id=job_id)
            return
        reservation = self._pending.pop(job_id, None)
        url = assignment.url or self._livekit_url
        if not assignment.token:
            await self._release(job_id)
            self._queue_status(
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
            self._queue_status(pb.UpdateJobStatus(job_id=job_id, status=pb.JS_FAILED, error=error))
            log.warning("dispatch_assignment_refused", job_id=job_id, error=error)
            return
        if self._jobs.get(job_id) is entry and job_id not in self._outbox:
            self._queue_status(pb.UpdateJobStatus(job_id=job_id, status=pb.JS_RUNNING))
        log.info("dispatch_job_started", job_id=job_id, room=job.room.name, url=url)

    async def _on_termination(self, term: pb.JobTermination) -> None:
        job_id = term.job_id
        if job_id in self._pending:
            await self._release(job_id)
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
            self._queue_status(pb.UpdateJobStatus(job_id=job_id, status=pb.JS_SUCCESS))
        log.info("dispatch_job_terminated", job_id=job_id, cancelled=cancelled)

    # -- job ends and status ------------------------------------------------------------------

    def _on_job_end(self, job_id: str, final_state: str, reason: str | None) -> None:
        if self._jobs.pop(job_id, None) is None:
            return  # not one of ours (another door) or already reported
        self._queue_status(job_status_message(job_id, final_state, reason))

    def _queue_status(self, update: pb.UpdateJobStatus) -> None:
        self._outbox[update.job_id] = update
        self._wakeup.set()

    async def _flush_outbox(self) -> None:
        async with self._flush_lock:
            for job_id, update in list(self._outbox.items()):
                if self._outbox.get(job_id) is not update:
                    continue
                if not await self._send(pb.WorkerMessage(update_job=update)):
                    return  # kept for the next connection
                if self._outbox.get(job_id) is update:
                    del self._outbox[job_id]

    def _status_snapshot(self) -> tuple[int, int, bool]:
        m = self._manager
        return m.active_jobs, m.max_jobs, m.draining

    async def _send_status(self) -> None:
        active, capacity, draining = snapshot = self._status_snapshot()
        self._last_status = snapshot
        await self._send(worker_status_message(active=active, capacity=capacity, draining=draining))

    async def _send(self, msg: pb.WorkerMessage) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        async with self._send_lock:
            try:
                await ws.send_bytes(msg.SerializeToString())
            except (aiohttp.ClientError, ConnectionError) as e:
                log.info("worker_send_failed", kind=msg.WhichOneof("message"), error=repr(e))
                return False
        return True

    def _prune_pending(self) -> None:
        now = time.monotonic()
        for job_id, reservation in list(self._pending.items()):
            if reservation.deadline < now:
                del self._pending[job_id]  # the manager released it after hold_seconds

    async def _release(self, job_id: str) -> None:
        self._pending.pop(job_id, None)
        try:
            await self._manager.release(job_id)
        except Exception:
            log.exception("dispatch_release_failed", job_id=job_id)
