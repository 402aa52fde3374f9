"""Pure translations between LiveKit's agent protocol (``livekit.protocol.agent``) and ours."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from livekit import api
from livekit.protocol import agent as pb
from livekit.protocol import models

from agents.job import JobType, valid_job_id
from app.admission import AdmissionResult, JobRequest
from app.dispatch.config import WorkerSettings
from app.dispatch.ports import InvalidJobError

PROTOCOL_VERSION = "external-agent/0.1.0"

_JOB_TYPES: dict[int, JobType] = {
    pb.JT_ROOM: "JT_ROOM",
    pb.JT_PUBLISHER: "JT_PUBLISHER",
    pb.JT_PARTICIPANT: "JT_PARTICIPANT",
}
_WORKER_TYPES = {"room": pb.JT_ROOM, "publisher": pb.JT_PUBLISHER}
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def agent_ws_url(livekit_url: str) -> str:
    """``https://host/x`` -> ``wss://host/x/agent`` (the worker endpoint)."""
    parts = urlsplit(livekit_url)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"livekit url must be ws://, wss://, http:// or https://: {livekit_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/agent", "", ""))


def worker_token(api_key: str, api_secret: str) -> str:
    """A JWT with the ``agent`` grant: what the server requires on ``/agent``."""
    return api.AccessToken(api_key, api_secret).with_grants(api.VideoGrants(agent=True)).to_jwt()


def register_message(settings: WorkerSettings) -> pb.WorkerMessage:
    perms = settings.permissions
    return pb.WorkerMessage(
        register=pb.RegisterWorkerRequest(
            type=_WORKER_TYPES[settings.worker_type],
            agent_name=settings.agent_name,
            version=PROTOCOL_VERSION,
            ping_interval=max(1, round(settings.ping_interval)),
            allowed_permissions=models.ParticipantPermission(
                can_publish=perms.can_publish,
                can_subscribe=perms.can_subscribe,
                can_publish_data=perms.can_publish_data,
                can_update_metadata=perms.can_update_metadata,
                hidden=perms.hidden,
                agent=True,
            ),
        )
    )


def job_request_from_proto(job: pb.Job) -> JobRequest:
    """Map the server's ``Job`` to a ``JobRequest(source="dispatch")``; the token comes later
    with the assignment. Raises :class:`InvalidJobError` for a job we cannot run."""
    if not job.id:
        raise InvalidJobError("job has no id")
    if not valid_job_id(job.id):
        raise InvalidJobError("job id is not a valid job id")
    job_type = _JOB_TYPES.get(job.type)
    if job_type is None:
        raise InvalidJobError(f"unknown job type {job.type}")
    if not job.room.name:
        raise InvalidJobError("job has no room name")
    identity = job.participant.identity if job.HasField("participant") else ""
    if job_type != "JT_ROOM" and not identity:
        raise InvalidJobError(f"{job_type} job without a participant identity")
    return JobRequest(
        source="dispatch",
        job_id=job.id,
        dispatch_id=job.dispatch_id,
        job_type=job_type,
        room_name=job.room.name,
        room_sid=job.room.sid,
        participant_identity=identity or None,
        metadata=job.metadata,
        access_token=None,
        server_url=None,
    )


def availability_message(job_id: str, result: AdmissionResult | None) -> pb.WorkerMessage:
    """``AvailabilityResponse``: available with the participant's identity, name and metadata
    when ``result`` accepted the job, else unavailable."""
    resp = pb.AvailabilityResponse(job_id=job_id, available=False)
    if result is not None and result.accepted:
        resp.available = True
        resp.participant_identity = result.participant_identity
        resp.participant_name = result.participant_name
        resp.participant_metadata = result.participant_metadata
    return pb.WorkerMessage(availability=resp)


def job_status_message(job_id: str, final_state: str, reason: str | None) -> pb.UpdateJobStatus:
    """A job's end as ``UpdateJobStatus``. ``failed`` -> ``JS_FAILED`` with the reason;
    ``completed`` and ``cancelled`` (a JobTermination, an operator, the drain) -> ``JS_SUCCESS``,
    as the reference worker does for a job that closed cleanly."""
    if final_state == "failed":
        return pb.UpdateJobStatus(job_id=job_id, status=pb.JS_FAILED, error=reason or "failed")
    return pb.UpdateJobStatus(job_id=job_id, status=pb.JS_SUCCESS)


AVAILABLE_MARGIN = 0.99
"""At capacity while refused rooms can still be deferred, the reported load is this share of
the server's target load: under it, so the server still routes offers here."""


def worker_status_message(
    *,
    active: int,
    capacity: int,
    draining: bool,
    deferring: bool = False,
    target_load: float = 0.7,
) -> pb.WorkerMessage:
    """``UpdateWorkerStatus``; full at capacity or when draining.

    The load is ``active / capacity`` scaled to the server's ``target_load``: a stock server
    routes an offer only to a node whose available workers are below that load (and picks a
    worker weighted by ``1 - load``), so an unscaled load would stop offers at 70 % of
    ``max_jobs``. With ``deferring`` (deferred dispatch has room) a worker at capacity stays
    ``available`` just under the target: offers keep coming, are refused and deferred."""
    share = 1.0 if capacity <= 0 else min(1.0, active / capacity)
    at_capacity = active >= capacity
    full = draining or (at_capacity and not deferring)
    if full:
        load = 1.0
    else:
        load = target_load * min(share, AVAILABLE_MARGIN)
    return pb.WorkerMessage(
        update_worker=pb.UpdateWorkerStatus(
            status=pb.WS_FULL if full else pb.WS_AVAILABLE,
            load=load,
            job_count=active,
            draining=draining,
        )
    )
