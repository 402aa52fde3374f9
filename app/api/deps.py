"""Dependencies: the runtime from ``app.state`` and the admin bearer check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr

from app.jobs.manager import JobManager
from app.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_manager(runtime: RuntimeDep) -> JobManager:
    return runtime.manager


ManagerDep = Annotated[JobManager, Depends(get_manager)]


def bearer_matches(request: Request, token: SecretStr) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


def require_admin(request: Request, runtime: RuntimeDep) -> None:
    """The jobs API needs ``Authorization: Bearer <admin_token>``; it is off (404) when no token
    is configured."""
    token = runtime.settings.admin_token
    if token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the jobs API is off (no admin_token)")
    if not bearer_matches(request, token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin bearer token required",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Annotated[None, Depends(require_admin)]
