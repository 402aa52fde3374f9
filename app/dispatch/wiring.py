"""How the LiveKit doors plug into the app: the worker as a background service, the webhook
router. Both are off unless the LiveKit URL (worker only) and API key/secret are configured."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from fastapi import APIRouter, Request

from app.admission import Admission
from app.dispatch.deferred import DeferredStore, MemoryDeferredStore, RedisDeferredStore
from app.dispatch.livekit_webhook import LiveKitWebhookHandler, build_livekit_webhook_router
from app.dispatch.redispatch import LiveKitDispatchAPI, Redispatcher
from app.dispatch.worker import AgentWorker
from app.security.failures import FailureLimiter

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.settings import Settings

log = structlog.get_logger("app.dispatch")


def _credentials(settings: Settings) -> tuple[str, str] | None:
    if not settings.livekit_api_key or settings.livekit_api_secret is None:
        return None
    secret = settings.livekit_api_secret.get_secret_value()
    return (settings.livekit_api_key, secret) if secret else None


def dispatch_services(settings: Settings) -> list[Callable[[Runtime], AgentWorker]]:
    """The native-dispatch worker's service factory, when enabled and configured."""
    creds = _credentials(settings)
    if not settings.worker.enabled:
        return []
    if creds is None or not settings.livekit_url:
        log.info("livekit_worker_off", reason="livekit_url, api_key or api_secret not set")
        return []
    url = settings.livekit_url
    api_key, api_secret = creds

    def make_worker(runtime: Runtime) -> AgentWorker:
        return AgentWorker(
            manager=runtime.manager,
            settings=settings.worker,
            livekit_url=url,
            api_key=api_key,
            api_secret=api_secret,
            redispatcher=_redispatcher(settings, runtime, url, api_key, api_secret),
        )

    return [make_worker]


def _redispatcher(
    settings: Settings, runtime: Runtime, url: str, api_key: str, api_secret: str
) -> Redispatcher | None:
    """Deferred dispatch for the worker, when on: the queue shared through Redis when the job
    registry is, its outcomes and length in the metrics, its rooms in ``GET /jobs``."""
    defer = settings.worker.defer
    if not defer.enabled:
        return None
    store: DeferredStore
    if settings.registry == "redis" and settings.redis_url is not None:
        store = RedisDeferredStore.from_url(
            settings.redis_url.get_secret_value(), ttl=defer.ttl, max_entries=defer.max_entries
        )
    else:
        store = MemoryDeferredStore(ttl=defer.ttl, max_entries=defer.max_entries)
    manager = runtime.manager

    load = runtime.load

    def free_slots() -> int:
        if manager.draining or load.overloaded() is not None:
            return 0
        return manager.max_jobs - manager.used_slots

    redispatcher = Redispatcher(
        store=store,
        api=LiveKitDispatchAPI(url=url, api_key=api_key, api_secret=api_secret),
        settings=defer,
        free_slots=free_slots,
        on_outcome=runtime.metrics.deferred_outcome,
    )
    runtime.metrics.deferred_waiting.set_function(lambda: redispatcher.waiting)
    runtime.deferred = redispatcher
    return redispatcher


def _manager_of(request: Request) -> Admission:
    from app.api.deps import get_runtime  # the app's dependency: 503 while starting

    return get_runtime(request).manager


def _limiter_of(request: Request) -> FailureLimiter:
    from app.api.deps import get_runtime

    return get_runtime(request).auth_failures


def livekit_webhook_routers(settings: Settings) -> list[APIRouter]:
    """``POST /livekit/webhook``, when enabled and the API key/secret are configured."""
    creds = _credentials(settings)
    if not settings.livekit_webhook.enabled:
        return []
    if creds is None:
        log.info("livekit_webhook_off", reason="livekit api_key or api_secret not set")
        return []
    handler = LiveKitWebhookHandler(
        settings=settings.livekit_webhook, api_key=creds[0], api_secret=creds[1]
    )
    return [
        build_livekit_webhook_router(
            handler=handler, get_admission=_manager_of, get_limiter=_limiter_of
        )
    ]
