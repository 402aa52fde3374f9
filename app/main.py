"""The FastAPI application factory.

``create_app(settings)`` builds an app whose lifespan creates the :class:`Runtime` (metrics, job
manager, background services) and puts it on ``app.state.runtime``. Nothing happens at import.

Adding a door or a background service (e.g. LiveKit webhooks, native dispatch)::

    create_app(settings, routers=[livekit_webhook_router], services=[make_dispatch_worker])

where ``make_dispatch_worker(runtime) -> BackgroundService`` (``start()`` / ``aclose()``). They
are started after the manager exists and stopped, last first, before it closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from agents.job import JobBody
from app.api import console, health, jobs, knowledge, playground
from app.api.errors import contract_errors
from app.api.intake import intake_openapi, intake_route
from app.dispatch.livekit_webhook import WEBHOOK_PATH
from app.dispatch.wiring import dispatch_services, livekit_webhook_routers
from app.jobs.bodies import default_job_body
from app.jobs.failover import failover_services
from app.metrics import Metrics
from app.runtime import Runtime, ServiceFactory
from app.settings import Settings
from app.web import STATIC_DIR, STATIC_PREFIX

log = structlog.get_logger("app.main")


def create_app(
    settings: Settings,
    *,
    job_body: JobBody | None = None,
    routers: Sequence[APIRouter] = (),
    services: Sequence[ServiceFactory] = (),
) -> FastAPI:
    """The service. ``job_body`` defaults to the testing hook (dev mode) or the agent
    (``agents.entry.make_job_body(settings.agent)``), resolved at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        body = job_body if job_body is not None else default_job_body(settings)
        runtime = Runtime(settings=settings, job_body=body, metrics=Metrics(),
                          request_exit=getattr(app.state, "request_exit", None))
        app.state.runtime = runtime
        await runtime.start([*failover_services(settings), *dispatch_services(settings), *services])
        log.info(
            "service_started",
            max_jobs=settings.max_jobs,
            webhook_path=settings.webhook_path,
            secrets=len(settings.webhook_secrets),
            dev_mode=settings.dev_mode,
        )
        try:
            yield
        finally:
            await runtime.aclose()
            log.info("service_stopped")

    app = FastAPI(
        title="LiveKit external agent",
        lifespan=lifespan,
        docs_url="/docs" if settings.dev_mode else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.dev_mode else None,
    )
    app.state.settings = settings
    # The webhook is the hot path: a plain route on the app's own router (an included router
    # would match each request twice), tried first. See app/api/intake.py.
    app.router.routes.insert(0, intake_route(settings.webhook_path))
    intake_openapi(app, settings.webhook_path)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(knowledge.router)
    # The browser pages (docs/playground.md): each answers 404 where it is off.
    app.include_router(playground.router)
    app.include_router(console.router)
    if settings.admin_token is not None or settings.playground.available(
        dev_mode=settings.dev_mode
    ):
        app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="web")
    for router in (*livekit_webhook_routers(settings), *routers):
        app.include_router(router)
    contract_errors(app, (settings.webhook_path, WEBHOOK_PATH))
    return app
