"""Shared fixtures for the service tests: settings, a signed-notification builder, a controllable
job body and an in-process app with its lifespan running."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from agents.job import JobFailed, JobOutcome, JobReporter, JobSpec
from app.main import create_app
from app.runtime import Runtime
from app.security.signatures import sign_headers
from app.settings import Settings

pytest_plugins = ["livekit_env", "redis_env"]  # the real-server fixtures (the `livekit` tier)

SECRET = "test-webhook-secret-0123456789abcdef"
OLD_SECRET = "old-webhook-secret-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
API_KEY = "APItestkey"
API_SECRET = "api-secret-0123456789abcdef0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: tests start from none of ours."""
    for name in list(os.environ):
        if name.startswith(("EXTERNAL_AGENT_", "LIVEKIT_")):
            monkeypatch.delenv(name, raising=False)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_secrets": [SECRET],
        "livekit_url": "wss://livekit.example.com",
        "admin_token": ADMIN,
        "max_jobs": 5,
    }
    values.update(overrides)
    return Settings(**values)


def notification(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": "AJ_abc123",
        "dispatch_id": "AD_xyz789",
        "job_type": "JT_ROOM",
        "room": {"sid": "RM_abc", "name": "my-room", "created_at": 1234567890},
        "metadata": "custom-data",
        "access_token": "eyJhbGc.test.token",
        "server_url": "wss://livekit.example.com",
        "timestamp": int(time.time()),
    }
    body.update(overrides)
    return body


def signed(
    body: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    scheme: str = "livekit",
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    headers.update(
        sign_headers(
            raw,
            secret,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            scheme="standard" if scheme == "standard" else "livekit",
            msg_id="msg_test_1",
        )
    )
    return raw, headers


class ControlledBody:
    """A job body that reports connecting/running, then waits for :meth:`finish` (or is
    cancelled). Records every spec it was given."""

    def __init__(self) -> None:
        self.specs: list[JobSpec] = []
        self.running: dict[str, asyncio.Event] = {}
        self._gates: dict[str, asyncio.Event] = {}
        self._results: dict[str, JobOutcome | Exception] = {}
        self.cancelled: list[str] = []

    def _gate(self, job_id: str) -> asyncio.Event:
        return self._gates.setdefault(job_id, asyncio.Event())

    def finish(self, job_id: str, result: JobOutcome | Exception | None = None) -> None:
        self._results[job_id] = result or JobOutcome(end_reason="participant_left")
        self._gate(job_id).set()

    async def wait_running(self, job_id: str) -> None:
        await asyncio.wait_for(self.running.setdefault(job_id, asyncio.Event()).wait(), 5)

    async def __call__(self, spec: JobSpec, reporter: JobReporter) -> JobOutcome:
        self.specs.append(spec)
        reporter.state("connecting")
        reporter.state("running", detail="in the room")
        reporter.record("seen", spec.job_id)
        self.running.setdefault(spec.job_id, asyncio.Event()).set()
        try:
            await self._gate(spec.job_id).wait()
        except asyncio.CancelledError:
            self.cancelled.append(spec.job_id)
            raise
        result = self._results[spec.job_id]
        if isinstance(result, Exception):
            raise result
        return result


@pytest.fixture
def body() -> ControlledBody:
    return ControlledBody()


class AppHarness:
    def __init__(self, client: httpx.AsyncClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime

    @property
    def manager(self) -> Any:
        return self.runtime.manager

    async def post(self, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post("/livekit/agent", content=raw, headers=headers)

    async def send(self, body: dict[str, Any] | bytes, **kw: Any) -> httpx.Response:
        raw, headers = signed(body, **kw)
        return await self.post(raw, headers)


async def finish_and_wait(
    manager: Any, body: ControlledBody, job_id: str, result: JobOutcome | Exception | None = None
) -> None:
    """Let ``job_id``'s body end with ``result`` and wait until the manager has recorded it."""
    ended = asyncio.Event()
    manager.on_job_end(lambda jid, _state, _reason: ended.set() if jid == job_id else None)
    body.finish(job_id, result)
    await asyncio.wait_for(ended.wait(), 5)


AppFactory = Callable[..., Any]


@pytest.fixture
async def make_app() -> AsyncIterator[AppFactory]:
    """``await make_app(settings, body)`` → an :class:`AppHarness` with the lifespan running;
    everything is closed (and every job task awaited) at teardown."""
    stack: list[tuple[Any, httpx.AsyncClient]] = []

    async def factory(settings: Settings, job_body: Any) -> AppHarness:
        app = create_app(settings, job_body=job_body)
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=10
        )
        stack.append((ctx, client))
        return AppHarness(client, app.state.runtime)

    yield factory
    for ctx, client in reversed(stack):
        await client.aclose()
        await ctx.__aexit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


__all__ = [  # imported by the test modules as `from conftest import ...`
    "ADMIN",
    "API_KEY",
    "API_SECRET",
    "OLD_SECRET",
    "SECRET",
    "finish_and_wait",
    "AppHarness",
    "ControlledBody",
    "JobFailed",
    "make_settings",
    "notification",
    "signed",
]


@pytest.fixture(scope="session")
def knowledge_embedder() -> Any:
    """The knowledge extra's embedding model, loaded once for the whole run."""
    from agents.knowledge.embedder import Embedder

    return Embedder(threads=1)
