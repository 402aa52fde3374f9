"""The operators' console: ``GET /console`` (the page) and its admin API under ``/console/api``.

Everything the page shows comes from the admin API (``Authorization: Bearer <admin_token>``; the
page asks for the token and keeps it in the tab's session storage). Without an admin token the
console is off (404), like the jobs API. It shows this replica's jobs: with several replicas
behind a load balancer each has its own console (the Redis registry shares only job ids).

- ``GET /console/api/overview``: load, running and finished jobs, the handoff queue;
- ``GET /console/api/jobs/{id}/events?after=N&wait=S``: a job's live data messages after
  sequence ``N``, waiting up to ``S`` seconds for the first (long polling);
- ``POST /console/api/jobs/{id}/handoff/handled``: take a handoff off the queue;
- ``GET /console/api/jobs/{id}/artifact``: the job's record as a JSON download.
Cancelling is the jobs API's ``DELETE /jobs/{id}``; a job's record is ``GET /jobs/{id}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, Response

from app.api.deps import AdminDep, ManagerDep, RuntimeDep
from app.api.errors import detail_response
from app.api.jobs import JobId
from app.jobs.manager import JobManager
from app.jobs.records import JobRecord
from app.web import STATIC_DIR

router = APIRouter(
    tags=["console"],
    responses={
        401: detail_response("Missing or wrong admin bearer token"),
        404: detail_response("The console is off (no admin_token), or no such job"),
        409: detail_response("Not possible in the job's state"),
        503: detail_response("The service is starting"),
    },
)

MAX_WAIT = 25.0
"""Longest a long poll is held (below common proxy idle timeouts)."""


def _job(manager: JobManager, job_id: str) -> JobRecord:
    job = manager.get_job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown job")
    return job


@router.get("/console", include_in_schema=False)
async def console_page(runtime: RuntimeDep) -> FileResponse:
    if runtime.settings.admin_token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the console is off (no admin_token)")
    return FileResponse(STATIC_DIR / "console.html", media_type="text/html")


@router.get("/console/api/overview")
async def overview(
    _admin: AdminDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    manager = runtime.manager
    now = time.time()
    jobs = []
    for job in manager.list_jobs()[:limit]:
        summary = job.summary()
        summary["duration_s"] = round((job.ended_at or now) - job.created_at, 1)
        summary["live_events"] = job.live.last_seq
        summary["end_reason"] = job.record.get("end_reason")
        jobs.append(summary)
    handoffs = [
        {
            "job_id": job.job_id,
            "room": job.room_name,
            "state": job.state,
            "reason": job.handoff.get("reason"),
            "summary": job.handoff.get("summary"),
            "timestamp": job.handoff.get("timestamp"),
            "handled_at": job.handoff_handled_at,
        }
        for job in manager.list_jobs()
        if job.handoff is not None
    ]
    handoffs.sort(key=lambda h: (h["handled_at"] is not None, str(h["timestamp"])))
    return {
        "replica": socket.gethostname(),
        "scope": "this replica",
        "registry": runtime.settings.registry,
        "active_jobs": manager.active_jobs,
        "max_jobs": manager.max_jobs,
        "draining": manager.draining,
        "jobs": jobs,
        "handoffs": handoffs,
    }


@router.get("/console/api/jobs/{job_id}/events")
async def job_events(
    _admin: AdminDep,
    manager: ManagerDep,
    job_id: JobId,
    after: Annotated[int, Query(ge=0)] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> dict[str, Any]:
    job = _job(manager, job_id)
    page = await job.live.wait_after(after, wait=wait)
    return {
        "job_id": job_id,
        "state": job.state,
        "events": [event.to_json() for event in page.events],
        "next": page.next_seq,
        "missed": page.missed,
        "closed": page.closed,
    }


@router.post("/console/api/jobs/{job_id}/handoff/handled")
async def handoff_handled(_admin: AdminDep, manager: ManagerDep, job_id: JobId) -> dict[str, Any]:
    job = _job(manager, job_id)
    if job.handoff is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "this job has no handoff")
    if job.handoff_handled_at is None:
        job.handoff_handled_at = time.time()
    return {"job_id": job_id, "handled_at": job.handoff_handled_at}


@router.get("/console/api/jobs/{job_id}/artifact", response_model=None)
async def artifact(
    _admin: AdminDep, runtime: RuntimeDep, job_id: JobId
) -> Response | FileResponse:
    """The artifact file written for the job when there is one, else its record as kept."""
    job = _job(runtime.manager, job_id)
    if not job.finished:
        raise HTTPException(status.HTTP_409_CONFLICT, "the job is still running")
    filename = f"{job_id}.json"
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    directory = runtime.settings.agent.artifacts_dir
    written = job.record.get("artifact")
    if directory is not None and isinstance(written, str):
        path = Path(written)
        if await asyncio.to_thread(_inside, path, directory):
            return FileResponse(path, media_type="application/json", headers=disposition)
    content = json.dumps(job.full(), ensure_ascii=False, indent=2, default=str)
    return Response(content, media_type="application/json", headers=disposition)


def _inside(path: Path, directory: Path) -> bool:
    """``path`` is a file directly in ``directory`` (never serve anything else)."""
    return path.parent.resolve() == directory.resolve() and path.is_file()
