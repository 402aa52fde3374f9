"""What makes an offer unacceptable whatever the load: the rules every door shares."""

from __future__ import annotations

from agents.job import valid_job_id
from app.admission import JobRequest
from app.settings import Settings

_REMOTE_SCHEMES = ("ws://", "wss://", "http://", "https://")


def server_url_problem(settings: Settings, url: str | None) -> str | None:
    """Why the job cannot join ``url``, or ``None``."""
    if not url:
        return "the offer has no server_url and no LIVEKIT_URL is configured"
    if url.startswith("local://"):
        if settings.agent.room.allow_local_rooms:
            return None
        return "local:// rooms are only allowed in development mode"
    if not url.startswith(_REMOTE_SCHEMES):
        return "server_url must be a ws://, wss://, http:// or https:// URL"
    return None


def offer_problem(settings: Settings, request: JobRequest) -> str | None:
    """Why this replica refuses ``request`` outright (not for capacity), or ``None``."""
    if not valid_job_id(request.job_id):
        return "invalid job_id (1-128 of A-Z a-z 0-9 _ - . : @, not starting with . - : @)"
    if not settings.enabled:
        return "agent disabled"
    if request.job_type not in settings.job_types:
        return f"job type {request.job_type} not enabled"
    if request.job_type != "JT_ROOM" and not request.participant_identity:
        return f"participant is required for {request.job_type}"
    return None
