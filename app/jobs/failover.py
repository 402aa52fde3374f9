"""Failover: a call goes on on another replica when its replica is lost.

Each running job holds a lease in Redis (:mod:`app.jobs.failover_store`) that a keeper task here
renews every third of ``lease_seconds``; with each renewal after a turn or a tool round it also
writes the job's checkpoint: what the offer said (room, job type, target, metadata, door), the
legs so far, and what the body handed :meth:`~agents.job.JobReporter.checkpoint` (the
conversation, the todo board, the transcript).

Every replica looks for leases that ran out every ``scan_interval`` while it has a free slot,
claims one (a new fencing token), checks the room still exists, mints a token for the same agent
identity and starts the job with the checkpoint (:meth:`JobManager.adopt`): the agent says its
recovery line and the conversation goes on. The job's record lists the legs and the gap.

Two replicas never run one job: a keeper whose renewal is refused (someone else holds the lease)
cancels its job at once, and one that cannot reach Redis cancels it before its lease can run out
(at 60 % of it), so a claim can only follow a stop. Every checkpoint write is fenced.

A drain with failover hands its calls over instead of cutting them: at the drain deadline each
running job gives its lease up (checkpoint kept) and leaves; another replica takes it over within
a scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from agents.job import JobSpec
from app.admission import JobRequest
from app.jobs.failover_store import Claim, FailoverStore, FailoverStoreError
from app.jobs.records import JobRecord, JobState

if TYPE_CHECKING:
    from app.jobs.manager import JobManager
    from app.metrics import Metrics
    from app.runtime import Runtime
    from app.settings import Settings

log = structlog.get_logger("app.jobs.failover")

STOP_AT = 0.6
"""A keeper that cannot renew stops its job once this share of the lease has passed since its
last renewal was sent: well before anyone else may claim the lease."""
HANDED_OVER = "handed over (drain)"


def _default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class FailoverSettings(BaseModel):
    """``failover:`` in the configuration (``EXTERNAL_AGENT_FAILOVER__ENABLED`` ...)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False, description="Calls go on on another replica when theirs is lost; needs "
        "registry: redis and LiveKit API credentials.",
    )
    lease_seconds: float = Field(
        5.0, ge=1.0, le=120.0,
        description="A job's lease: how long a lost replica's calls stay silent at most before "
        "another replica takes them over.",
    )
    scan_interval: float = Field(
        1.0, gt=0, le=30.0, description="How often a replica looks for lost jobs (s).",
    )
    checkpoint_ttl: float = Field(
        86400.0, ge=60, description="How long a checkpoint outlives its last write (s).",
    )
    replica: str = Field(
        default_factory=_default_replica, min_length=1, max_length=200, pattern=r"^[^|\s]+$",
        description="This replica's name in leases and records (default: host name and pid).",
    )
    handover_on_drain: bool = Field(
        True, description="At the drain deadline, hand running calls to another replica "
        "instead of ending them.",
    )


@dataclass(eq=False, slots=True)
class _Lease:
    """One running job's lease, kept by its own task."""

    job: JobRecord
    header: dict[str, Any]
    token: int | None = None
    agent: dict[str, Any] | None = None
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    handing_over: bool = False

    def document(self) -> str:
        return json.dumps({**self.header, "legs": self.job.legs, "agent": self.agent,
                           "saved_at": time.time()}, separators=(",", ":"))


class RoomCheck:
    """Whether a room still exists (LiveKit ``RoomService``); one client per server URL."""

    def __init__(self, *, api_key: str, api_secret: str) -> None:
        self._key = api_key
        self._secret = api_secret
        self._apis: dict[str, Any] = {}

    async def exists(self, url: str, room: str) -> bool | None:
        """``None`` when the server could not be asked."""
        from app.dispatch.redispatch import LiveKitDispatchAPI, RedispatchError

        api = self._apis.get(url)
        if api is None:
            api = self._apis[url] = LiveKitDispatchAPI(url=url, api_key=self._key,
                                                       api_secret=self._secret)
        try:
            return await api.room_exists(room)
        except RedispatchError as e:
            log.warning("failover_room_check_failed", room=room, error=e.message)
            return None

    async def aclose(self) -> None:
        for api in self._apis.values():
            await api.aclose()
        self._apis.clear()


class Failover:
    """The :class:`~app.runtime.BackgroundService` and the manager's
    :class:`~app.jobs.reporter.JobObserver`."""

    name = "failover"

    def __init__(self, *, settings: FailoverSettings, store: FailoverStore, manager: JobManager,
                 rooms: RoomCheck, livekit_url: str | None, metrics: Metrics | None = None
                 ) -> None:
        self._settings = settings
        self._store = store
        self._manager = manager
        self._rooms = rooms
        self._livekit_url = livekit_url
        self._lease_s = settings.lease_seconds
        self._leases: dict[str, _Lease] = {}
        self._claims: dict[str, Claim] = {}  # claimed here, being adopted
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self._metrics = metrics
        if metrics is not None:
            metrics.failover_leases.set_function(lambda: self.holding)
        manager.observe(self)
        manager.on_job_end(self._job_ended)

    # -- BackgroundService -------------------------------------------------------------------

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="failover-watch")
        log.info("failover_started", replica=self._settings.replica, lease_s=self._lease_s)

    async def aclose(self) -> None:
        """Stop looking for lost jobs and stop keeping leases (a job still running here when the
        service stops without a drain is then taken over elsewhere once its lease runs out)."""
        if self._closed:
            return
        self._closed = True
        keepers = [t for t in (self._watcher, *(lease.task for lease in self._leases.values()))
                   if t is not None]
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        # Releases and hand-overs under way finish (each is bounded by STOP_AT of a lease).
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._leases.clear()
        await self._rooms.aclose()
        await self._store.aclose()

    @property
    def holding(self) -> int:
        return sum(1 for lease in self._leases.values() if lease.token is not None)

    # -- JobObserver --------------------------------------------------------------------------

    def job_started(self, job: JobRecord, spec: JobSpec) -> None:
        if self._closed or spec.server_url.startswith("local://"):
            return  # an in-memory room lives and dies with this process
        claim = self._claims.pop(job.job_id, None)
        lease = _Lease(job=job, header={"v": 1, "job": _offer(spec)},
                       token=claim.token if claim else None, agent=spec.resume or None)
        if claim is None:
            job.legs.append({"replica": self._settings.replica, "started_at": time.time()})
        else:
            lease.dirty.set()  # the legs changed: checkpoint them at once
        self._leases[job.job_id] = lease
        lease.task = asyncio.create_task(self._keep(lease), name=f"failover-lease-{job.job_id}")

    def job_checkpoint(self, job: JobRecord, state: dict[str, Any]) -> None:
        lease = self._leases.get(job.job_id)
        if lease is not None and lease.job is job:
            lease.agent = state
            lease.dirty.set()

    def _job_ended(self, job_id: str, state: JobState, reason: str | None) -> None:
        lease = self._leases.pop(job_id, None)
        if lease is None:
            return
        keeper = lease.task
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()
        if lease.token is not None and not self._closed:
            self._spawn(self._let_go(lease, keeper), f"failover-release-{job_id}")

    # -- keeping a lease ---------------------------------------------------------------------

    async def _keep(self, lease: _Lease) -> None:
        job_id = lease.job.job_id
        renew_every = self._lease_s / 3
        last_ok = time.monotonic()
        while lease.token is None:  # a job that started here: take its lease
            try:
                lease.token = await self._store.acquire(job_id, lease.document())
            except FailoverStoreError as e:
                log.warning("failover_lease_not_taken", job_id=job_id, error=e.message)
                await asyncio.sleep(renew_every)
                continue
            if lease.token is None:  # someone holds it: this replica must not run the job
                await self._lost(lease, "lease held by another replica")
                return
            lease.job.legs[-1]["token"] = lease.token
            lease.dirty.set()  # the first checkpoint names the token
            last_ok = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(renew_every):
                    await lease.dirty.wait()
            document = lease.document() if lease.dirty.is_set() else None
            lease.dirty.clear()
            sent = time.monotonic()
            try:
                result = await self._store.keep(job_id, lease.token, document)
            except FailoverStoreError as e:
                if document is not None:
                    lease.dirty.set()  # write it with the next renewal that gets through
                if time.monotonic() - last_ok >= STOP_AT * self._lease_s:
                    await self._lost(lease, f"registry unreachable ({e.message})")
                    return
                await asyncio.sleep(min(0.5, renew_every))
                continue
            if result == "lost":
                await self._lost(lease, "lease taken over by another replica")
                return
            if result == "recreated":
                log.warning("failover_lease_recreated", job_id=job_id)
                lease.dirty.set()  # Redis lost the checkpoint too
            last_ok = sent

    async def _lost(self, lease: _Lease, why: str) -> None:
        job_id = lease.job.job_id
        log.error("failover_lease_lost", job_id=job_id, reason=why)
        self._count("lease_lost")
        self._leases.pop(job_id, None)
        await self._manager.cancel(job_id, reason=f"failover: {why}")

    async def _let_go(self, lease: _Lease, keeper: asyncio.Task[None] | None) -> None:
        if keeper is not None and keeper is not asyncio.current_task():
            await asyncio.gather(keeper, return_exceptions=True)
        assert lease.token is not None
        job_id = lease.job.job_id
        deadline = time.monotonic() + STOP_AT * self._lease_s
        while True:
            try:
                if lease.handing_over:
                    lease.dirty.clear()
                    await self._store.keep(job_id, lease.token, lease.document())
                    await self._store.abandon(job_id, lease.token)
                else:
                    await self._store.release(job_id, lease.token)
                return
            except FailoverStoreError as e:
                if time.monotonic() >= deadline:
                    # The lease runs out by itself; a replica that claims it finds the room
                    # (or the caller) gone and closes the job.
                    log.error("failover_release_failed", job_id=job_id, error=e.message)
                    return
                await asyncio.sleep(0.25)

    # -- drain: hand calls over --------------------------------------------------------------

    async def hand_over(self) -> None:
        """At the drain deadline: give every running job to the other replicas."""
        if not self._settings.handover_on_drain:
            return
        handing = [lease for lease in self._leases.values() if lease.token is not None]
        for lease in handing:
            lease.handing_over = True
        await asyncio.gather(*(self._manager.cancel(lease.job.job_id, reason=HANDED_OVER)
                               for lease in handing))
        if handing:
            log.info("failover_handed_over", jobs=len(handing))
            for _ in handing:
                self._count("handed_over")

    # -- taking lost jobs over ---------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.scan_interval)
            try:
                await self._scan()
            except FailoverStoreError as e:
                log.warning("failover_scan_failed", error=e.message)
            except Exception:
                log.exception("failover_scan_crashed")

    async def _scan(self) -> None:
        manager = self._manager
        free = manager.max_jobs - manager.used_slots
        if free <= 0 or manager.draining:
            return
        for job_id in await self._store.expired(free):
            if not manager.has_free_slot:
                return
            if job_id in self._leases:
                continue  # its keeper here decides (and stops it if the lease is gone)
            claim = await self._store.claim(job_id)
            if claim is not None:
                await self._take_over(claim)

    async def _take_over(self, claim: Claim) -> None:
        job_id = claim.job_id
        try:
            saved = json.loads(claim.document)
            request = _request(saved["job"])
            legs = [dict(leg) for leg in saved.get("legs") or [] if isinstance(leg, dict)]
        except (ValueError, KeyError, TypeError) as e:
            log.error("failover_checkpoint_unreadable", job_id=job_id, error=str(e)[:200])
            self._count("unreadable")
            await self._store.release(job_id, claim.token)
            return
        agent = saved.get("agent") if isinstance(saved.get("agent"), dict) else {}
        # The old leg was last heard of at its last renewal (a lease's length before it ran
        # out) or its last checkpoint, whichever is later (a hand-over ends the lease early).
        saved_at = saved.get("saved_at")
        last_seen = max(claim.expired_at - self._lease_s if claim.expired_at else 0.0,
                        float(saved_at) if isinstance(saved_at, int | float) else 0.0) or None
        if legs:
            legs[-1]["lost_at"] = last_seen
        legs.append({
            "replica": self._settings.replica, "token": claim.token, "started_at": time.time(),
            "gap_s": round(claim.claimed_at - last_seen, 3) if last_seen else None,
        })
        log.info("failover_claimed", job_id=job_id, room=request.room_name, token=claim.token,
                 legs=len(legs))
        url = self._livekit_url or request.server_url or ""
        if await self._rooms.exists(url, request.room_name) is False:
            self._manager.close_adopted(request, legs=legs, reason="room_gone_before_failover")
            self._count("room_gone")
            await self._store.release(job_id, claim.token)
            return
        self._claims[job_id] = claim
        problem = self._manager.adopt(request, resume=agent, legs=legs)
        if problem is not None:
            self._claims.pop(job_id, None)
            log.warning("failover_not_adopted", job_id=job_id, reason=problem)
            self._count("not_adopted")
            await self._store.abandon(job_id, claim.token)
            return
        self._count("taken_over")

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.failover.labels(outcome=outcome).inc()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _offer(spec: JobSpec) -> dict[str, Any]:
    """What a claim needs to start the job again (never the access token: a new one is minted)."""
    return {
        "job_id": spec.job_id, "dispatch_id": spec.dispatch_id, "job_type": spec.job_type,
        "room_name": spec.room_name, "room_sid": spec.room_sid,
        "participant_identity": spec.participant_identity, "metadata": spec.metadata,
        "server_url": spec.server_url, "source": spec.source,
    }


def _request(offer: dict[str, Any]) -> JobRequest:
    return JobRequest(
        source=offer["source"], job_id=str(offer["job_id"]),
        dispatch_id=str(offer.get("dispatch_id") or ""), job_type=offer["job_type"],
        room_name=str(offer["room_name"]), room_sid=str(offer.get("room_sid") or ""),
        participant_identity=offer.get("participant_identity"),
        metadata=str(offer.get("metadata") or ""), server_url=offer.get("server_url"),
    )


def failover_services(settings: Settings) -> list[Any]:
    """The failover service's factory when ``failover.enabled`` (settings checked the rest)."""
    cfg = settings.failover
    if not cfg.enabled or settings.redis_url is None or not settings.livekit_api_key \
            or settings.livekit_api_secret is None:
        return []
    api_key, api_secret = settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()
    redis_url = settings.redis_url.get_secret_value()

    def make(runtime: Runtime) -> Failover:
        store = FailoverStore.from_url(
            redis_url, owner=cfg.replica, lease_seconds=cfg.lease_seconds,
            checkpoint_ttl=cfg.checkpoint_ttl,
        )
        failover = Failover(settings=cfg, store=store, manager=runtime.manager,
                            rooms=RoomCheck(api_key=api_key, api_secret=api_secret),
                            livekit_url=settings.livekit_url, metrics=runtime.metrics)
        runtime.handover = failover.hand_over
        return failover

    return [make]
