"""What an accepted offer becomes: the agent's answer (its identity in the room), the job's
record, the spec its body runs from, and the agent's access token when the offer brought none.

Pure functions of the settings and the offer: the manager decides, these build.
"""

from __future__ import annotations

from typing import Any

from agents.job import JobSpec
from app.admission import JobRequest
from app.jobs.records import JobRecord, StoredAnswer
from app.jobs.tokens import mint_agent_token
from app.settings import Settings


def agent_answer(settings: Settings, job_id: str) -> StoredAnswer:
    """Who the agent is in the room for ``job_id`` (the same on every replica)."""
    return StoredAnswer(
        participant_identity=settings.agent_identity_prefix + job_id,
        participant_name=settings.agent_name,
        participant_metadata=settings.agent_metadata,
    )


def agent_token(settings: Settings, request: JobRequest, answer: StoredAnswer) -> str:
    """A token for the agent to join the offer's room (raises ``TokenMintError``)."""
    return mint_agent_token(
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret,
        room=request.room_name,
        identity=answer.participant_identity,
        name=answer.participant_name,
        metadata=answer.participant_metadata,
        ttl_seconds=settings.token_ttl,
    )


def job_record(request: JobRequest, answer: StoredAnswer) -> JobRecord:
    return JobRecord(
        job_id=request.job_id,
        dispatch_id=request.dispatch_id,
        source=request.source,
        job_type=request.job_type,
        room_name=request.room_name,
        room_sid=request.room_sid,
        participant_identity=request.participant_identity,
        agent_identity=answer.participant_identity,
    )


def job_spec(request: JobRequest, answer: StoredAnswer, *, access_token: str, server_url: str,
             resume: dict[str, Any] | None = None) -> JobSpec:
    return JobSpec(
        job_id=request.job_id,
        dispatch_id=request.dispatch_id,
        job_type=request.job_type,
        room_name=request.room_name,
        room_sid=request.room_sid,
        participant_identity=request.participant_identity,
        metadata=request.metadata,
        server_url=server_url,
        access_token=access_token,
        agent_identity=answer.participant_identity,
        agent_name=answer.participant_name,
        agent_metadata=answer.participant_metadata,
        source=request.source,
        resume=resume,
    )
