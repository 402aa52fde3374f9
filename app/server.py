"""Running the app under uvicorn with a real drain on SIGTERM / SIGINT.

uvicorn's own handling closes the listening socket at once. Ours keeps serving while it drains:
readiness turns 503 and new offers get 503 with ``Retry-After`` at once, running jobs get up to
``drain_timeout`` seconds, the rest are cancelled and awaited, and only then does uvicorn stop.
A second signal cuts the drain short (jobs are still cancelled and awaited in the lifespan).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
from types import FrameType

import structlog
import uvicorn
from fastapi import FastAPI

from app.http_guard import ConnectionGuard, GuardedHttpToolsProtocol, HttpLimits
from app.runtime import Runtime
from app.settings import HttpSettings

log = structlog.get_logger("app.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        # The runtime asks for the same drain and exit when the agent says this replica cannot
        # serve (app.jobs.health); the orchestrator then starts a fresh process.
        self._app.state.request_exit = self._request_exit
        await super().serve(sockets)  # type: ignore[arg-type]

    def _request_exit(self, reason: str) -> None:
        """Drain and exit, as on SIGTERM; nothing more when a drain is already under way."""
        if self._drain_task is None and not self.should_exit:
            self._begin_drain(reason)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the signal handler on the loop's thread: only schedule work here.
        loop = self._loop
        if loop is None or self._drain_task is not None or self.should_exit:
            # A second signal: stop waiting for the drain. The lifespan still cancels and
            # awaits every job (force_exit would skip it).
            self.should_exit = True
            return
        loop.call_soon_threadsafe(self._begin_drain, signal.Signals(sig).name)

    def _begin_drain(self, signame: str) -> None:
        if self._drain_task is not None:
            self.should_exit = True
            return
        log.info("shutdown_signal", signal=signame)  # or the runtime's reason ("unhealthy")
        self._drain_task = asyncio.create_task(self._drain(), name="server-drain")

    async def _drain(self) -> None:
        try:
            runtime: Runtime | None = getattr(self._app.state, "runtime", None)
            if runtime is not None:
                await runtime.drain()
        finally:
            self.should_exit = True

    async def shutdown(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        task = self._drain_task
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await super().shutdown(sockets)  # type: ignore[arg-type]


def run(
    app: FastAPI,
    *,
    host: str,
    port: int,
    http: HttpSettings | None = None,
    log_level: str = "info",
) -> None:
    """Serve until a signal's drain finishes. Returns normally (exit code 0)."""
    limits = http or HttpSettings()
    guard = ConnectionGuard(
        limits=HttpLimits(
            max_header_bytes=limits.max_header_bytes,
            header_timeout=limits.header_timeout,
            body_timeout=limits.body_timeout,
            max_connections=limits.max_connections,
        )
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # Our protocol, whatever parser uvicorn would pick: the limits hold on every path.
        http=functools.partial(GuardedHttpToolsProtocol, guard=guard),  # type: ignore[arg-type]
        ws="none",
        timeout_keep_alive=max(1, round(limits.keep_alive_timeout)),
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, app=app)
    # Everything imported so far lives as long as the process: keep it out of every garbage
    # collection (the service's heap is large: FastAPI, pydantic, livekit, the agent).
    gc.collect()
    gc.freeze()
    server.run()
