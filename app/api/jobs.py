"""The jobs admin API: ``GET /jobs``, ``GET /jobs/{id}``, ``DELETE /jobs/{id}``.

Needs ``Authorization: Bearer <admin_token>``; off (404) when no admin token is configured.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from app.api.deps import AdminDep, ManagerDep, RuntimeDep

_DETAIL = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {"type": "string"}}}
        }
    }
}
router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    responses={
        401: {"description": "Missing or wrong admin bearer token", **_DETAIL},
        404: {"description": "The jobs API is off (no admin_token), or no such job", **_DETAIL},
        503: {"description": "The service is starting", **_DETAIL},
    },
)

JobId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("")
async def list_jobs(
    _admin: AdminDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    manager = runtime.manager
    jobs = manager.list_jobs()
    view: dict[str, Any] = {
        "active_jobs": manager.active_jobs,
        "max_jobs": manager.max_jobs,
        "draining": manager.draining,
        "load": runtime.load.snapshot(),
        "jobs": [job.summary() for job in jobs[:limit]],
    }
    if runtime.deferred is not None:
        view["deferred"] = await runtime.deferred.snapshot()
    return view


@router.get("/{job_id}")
async def get_job(_admin: AdminDep, manager: ManagerDep, job_id: JobId) -> dict[str, Any]:
    job = manager.get_job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown job")
    return job.full()


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "The job has already finished", **_DETAIL}},
)
async def cancel_job(_admin: AdminDep, manager: ManagerDep, job_id: JobId) -> dict[str, Any]:
    job = manager.get_job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown job")
    if job.finished:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job already {job.state}")
    await manager.cancel(job_id, reason="cancelled by operator")
    current = manager.get_job(job_id)
    return {"job_id": job_id, "state": current.state if current else job.state}
