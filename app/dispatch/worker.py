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
from typing import Any

import aiohttp
import structlog
from google.protobuf.message import DecodeError
from livekit.protocol import agent as pb

from app.dispatch.config import WorkerSettings
from app.dispatch.ports import (
    DispatchError,
    JobManagerPort,
    WorkerConnectionError,
    WorkerProtocolError,
)
from app.dispatch.protocol import (
    agent_ws_url,
    register_message,
    worker_status_message,
    worker_token,
)
from app.dispatch.redispatch import Redispatcher
from app.dispatch.worker_jobs import DispatchedJobs

log = structlog.get_logger("app.dispatch.worker")


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
        redispatcher: Redispatcher | None = None,
    ) -> None:
        if not api_key or not api_secret:
            raise ValueError("the worker needs the LiveKit api_key and api_secret")
        self._manager = manager
        self._settings = settings
        self._livekit_url = livekit_url
        self._url = agent_ws_url(livekit_url)
        self._api_key = api_key
        self._api_secret = api_secret
        self._redispatcher = redispatcher

        self._session: aiohttp.ClientSession | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._worker_id: str | None = None
        self._registered = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._last_pong = 0.0
        self._pong_seen = False
        self._jobs = DispatchedJobs(
            manager=manager,
            livekit_url=livekit_url,
            assignment_timeout=settings.assignment_timeout,
            send=self._send,
            wake=self._wakeup.set,
            redispatcher=redispatcher,
        )
        self._failure: DispatchError | None = None
        self._last_status: tuple[int, int, bool, bool] | None = None

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
        return self._jobs.running

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
        self._manager.on_job_end(self._jobs.on_job_end)
        if self._redispatcher is not None:
            self._manager.on_job_end(self._redispatcher.slot_freed)
            await self._redispatcher.start()
        self._run_task = asyncio.create_task(self._run(), name="dispatch-worker")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.closing = True
        # Handlers in flight are short (one admission call): let them finish, so the manager is
        # never left half-way through a reservation or a start.
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
        if self._registered.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._jobs.flush()
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._jobs.release_all()
        if self._redispatcher is not None:
            await self._redispatcher.aclose()
        if self._session is not None:
            await self._session.close()
        if self._jobs.unsent:
            log.warning("worker_closed_with_unsent_status", jobs=sorted(self._jobs.unsent))
        log.info("worker_closed", url=self._url)

    # -- connection lifecycle -----------------------------------------------------------------

    async def _run(self) -> None:
        s = self._settings
        attempt = 0
        while True:
            try:
                ws, reg = await self._connect()
            except Exception as e:
                if not isinstance(e, DispatchError):
                    log.exception("worker_connect_crashed", url=self._url)
                    e = WorkerConnectionError(f"unexpected {type(e).__name__}")
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
            except Exception:  # a bug must not end native dispatch for good: reconnect
                log.exception("worker_connection_crashed", url=self._url)
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
                ws = await self._session.ws_connect(
                    self._url,
                    headers=headers,
                    autoping=True,
                    heartbeat=self._settings.ping_interval,
                )
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
        self._pong_seen = False
        self._registered.set()
        log.info(
            "worker_registered",
            worker_id=reg.worker_id,
            url=self._url,
            agent_name=self._settings.agent_name,
            region=reg.server_info.region,
            running_jobs=len(self._jobs.running),
            unsent_status=len(self._jobs.unsent),
        )
        await self._jobs.flush()
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
            # Enforced once the server has shown it answers WorkerPing; otherwise the websocket
            # heartbeat (ping frames every ping_interval) still detects a dead connection.
            if self._pong_seen and time.monotonic() - self._last_pong > s.ping_timeout:
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
            self._jobs.prune_pending()
            await self._jobs.flush()
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
                self._jobs.on_availability(msg.availability), f"dispatch-availability-{job_id}"
            )
        elif which == "assignment":
            job_id = msg.assignment.job.id
            self._spawn(self._jobs.on_assignment(msg.assignment), f"dispatch-assignment-{job_id}")
        elif which == "termination":
            job_id = msg.termination.job_id
            self._spawn(
                self._jobs.on_termination(msg.termination), f"dispatch-termination-{job_id}"
            )
        elif which == "pong":
            self._last_pong = time.monotonic()
            self._pong_seen = True
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

    def _status_snapshot(self) -> tuple[int, int, bool, bool]:
        m = self._manager
        deferring = self._redispatcher is not None and self._redispatcher.accepting
        return m.active_jobs, m.max_jobs, m.draining, deferring

    async def _send_status(self) -> None:
        active, capacity, draining, deferring = snapshot = self._status_snapshot()
        self._last_status = snapshot
        await self._send(worker_status_message(
            active=active, capacity=capacity, draining=draining, deferring=deferring,
            target_load=self._settings.server_target_load))

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
