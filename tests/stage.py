"""One behaviour suite, two rooms: a *stage* is the service plus a room its callers join.

``memory``: the service in process (its app and lifespan), the in-memory room (``local://``).
``livekit``: ``external-agent serve`` in a subprocess, configured as the README says, and a real
``livekit-server`` (see :mod:`livekit_env`); runs only in the ``livekit`` tier.

Test bodies take the ``stage`` fixture and use only what both stages offer, so the in-memory room
cannot drift from LiveKit: when the two disagree, the real server is right.
"""

from __future__ import annotations

import abc
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from livekit_env import (
    WEBHOOK_PORT,
    Caller,
    LiveKitServer,
    MemoryCaller,
    RealCaller,
    ServiceProcess,
)

from app.security.signatures import sign_headers

SECRET = "stage-webhook-secret-0123456789abcdef"
ADMIN = "stage-admin-token-0123456789abcdef"
AGENT_NAME = "external-agent"
GREETING = "Hello! I'm the intake assistant. How can I help you today?"
TODO_ITEMS = [
    {"id": "name", "description": "the caller's full name", "required": True},
    {"id": "reason", "description": "what the call is about", "required": True},
    {"id": "phone", "description": "a callback number", "required": True},
]
FINAL_STATES = ("completed", "failed", "cancelled")


def signed_offer(server: LiveKitServer, *, job_id: str, room: str
                 ) -> tuple[bytes, dict[str, str]]:
    """A signed ``JT_ROOM`` job notification for ``room`` on ``server`` with an agent token (the
    same bytes may be sent to several replicas)."""
    body = {
        "job_id": job_id, "dispatch_id": f"AD_{job_id}", "job_type": "JT_ROOM",
        "room": {"sid": f"RM_{room}", "name": room}, "metadata": "",
        "access_token": server.agent_token(room, f"ai-agent-{job_id}"),
        "server_url": server.url, "timestamp": int(time.time()),
    }
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    headers.update(sign_headers(raw, SECRET, timestamp=int(time.time()), scheme="livekit",
                                msg_id=f"msg_{job_id}"))
    return raw, headers


def service_config(*, artifacts: Path, max_jobs: int = 3, **extra: Any) -> dict[str, Any]:
    """The configuration both stages run (the parts a YAML file holds)."""
    cfg: dict[str, Any] = {
        "log_format": "json",
        "log_level": "info",
        "max_jobs": max_jobs,
        "drain_timeout": 10,
        "worker": {"agent_name": AGENT_NAME, "status_interval": 1},
        "livekit_webhook": {"rules": [{"event": "room_started", "room_pattern": "hook-*"}]},
        "agent": {
            "artifacts_dir": str(artifacts),
            "persona": {"greeting": GREETING, "todo_items": TODO_ITEMS},
            "room": {"participant_wait": 20},
        },
    }
    return _merged(cfg, extra)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` at every depth: a dict merges into a dict, anything else
    replaces."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(value, dict) and isinstance(old, dict) \
            else value
    return out


class Stage(abc.ABC):
    kind: str
    server_url: str
    client: httpx.AsyncClient

    def __init__(self) -> None:
        self._callers: list[Caller] = []
        self._n = 0

    @abc.abstractmethod
    def agent_token(self, room: str, identity: str) -> str: ...

    @abc.abstractmethod
    def _new_caller(self, room: str, identity: str) -> Caller: ...

    async def caller(self, room: str, identity: str = "caller", *,
                     microphone: bool = True) -> Caller:
        """A caller in ``room`` (joined, microphone on unless told otherwise); left at teardown."""
        caller = self._new_caller(room, identity)
        self._callers.append(caller)
        await caller.join()
        if microphone:
            await caller.start_microphone()
        return caller

    def notification(self, *, job_id: str, room: str, job_type: str = "JT_ROOM",
                     participant: str | None = None, metadata: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": job_id, "dispatch_id": f"AD_{job_id}", "job_type": job_type,
            "room": {"sid": f"RM_{room}", "name": room}, "metadata": metadata,
            "access_token": self.agent_token(room, f"ai-agent-{job_id}"),
            "server_url": self.server_url, "timestamp": int(time.time()),
        }
        if participant is not None:
            body["participant"] = {"sid": f"PA_{participant}", "identity": participant}
        return body

    async def dispatch(self, **kw: Any) -> httpx.Response:
        """A job through the signed webhook door."""
        raw = json.dumps(self.notification(**kw)).encode()
        headers = {"content-type": "application/json"}
        headers.update(sign_headers(raw, SECRET, timestamp=int(time.time()), scheme="livekit",
                                    msg_id="msg_stage"))
        return await self.client.post("/livekit/agent", content=raw, headers=headers)

    async def job(self, job_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/jobs/{job_id}", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        view: dict[str, Any] = r.json()
        return view

    async def jobs(self) -> list[dict[str, Any]]:
        r = await self.client.get("/jobs", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        data = r.json()
        jobs: list[dict[str, Any]] = data["jobs"] if isinstance(data, dict) else data
        return jobs

    async def wait_job(self, job_id: str, states: tuple[str, ...] = FINAL_STATES, *,
                       within: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                r = await self.client.get(f"/jobs/{job_id}",
                                          headers={"authorization": f"Bearer {ADMIN}"})
                if r.status_code == 200 and r.json()["state"] in states:
                    view: dict[str, Any] = r.json()
                    return view
                await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        for caller in self._callers:
            await caller.leave()
        self._callers.clear()


class MemoryStage(Stage):
    kind = "memory"
    server_url = "local://stage"

    def __init__(self, *, hub: Any, client: httpx.AsyncClient) -> None:
        super().__init__()
        self.hub = hub
        self.client = client

    def agent_token(self, room: str, identity: str) -> str:
        from room_kit import make_token

        return make_token(room, identity)

    def _new_caller(self, room: str, identity: str) -> Caller:
        return MemoryCaller(hub=self.hub, room=room, identity=identity)


class RealStage(Stage):
    kind = "livekit"

    def __init__(self, *, server: LiveKitServer, service: ServiceProcess,
                 mic_queue_ms: int = 100) -> None:
        super().__init__()
        self.mic_queue_ms = mic_queue_ms
        self.server = server
        self.service = service
        self.client = service.client
        self.server_url = server.url

    def agent_token(self, room: str, identity: str) -> str:
        return self.server.agent_token(room, identity)

    def _new_caller(self, room: str, identity: str) -> Caller:
        return RealCaller(server=self.server, room=room, identity=identity,
                          mic_queue_ms=self.mic_queue_ms)


def real_service(server: LiveKitServer, workdir: Path, *, port: int = WEBHOOK_PORT,
                 **config: Any) -> ServiceProcess:
    """``external-agent serve`` pointed at ``server`` through the README's variables."""
    return ServiceProcess(
        workdir=workdir, port=port,
        config=service_config(artifacts=workdir / "jobs", **config),
        env={
            "LIVEKIT_URL": server.url,
            "LIVEKIT_API_KEY": server.api_key,
            "LIVEKIT_API_SECRET": server.api_secret,
            "LIVEKIT_WEBHOOK_SECRET": SECRET,
            "EXTERNAL_AGENT_ADMIN_TOKEN": ADMIN,
        },
    )


@pytest.fixture(params=["memory", pytest.param("livekit", marks=pytest.mark.livekit)])
async def stage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stage]:
    # ``@pytest.mark.stage_config(agent={...})``: configuration merged over service_config's
    # (at every depth), on both stages.
    marker = request.node.get_closest_marker("stage_config")
    extra: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if request.param == "memory":
        from agents.entry import make_job_body
        from agents.transport.memory import MemoryHub
        from app.main import create_app
        from app.settings import Settings

        hub = MemoryHub()
        settings = Settings.model_validate({
            **service_config(artifacts=tmp_path / "jobs", **extra),
            "dev_mode": True, "webhook_secrets": [SECRET], "admin_token": ADMIN,
            "livekit_api_key": "devkey",
            "livekit_api_secret": "devsecret-devsecret-devsecret-0123",
            "worker": {"enabled": False},
        })
        app = create_app(settings, job_body=make_job_body(settings.agent, hub=hub))
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://stage", timeout=15,
        ) as client:
            mem = MemoryStage(hub=hub, client=client)
            try:
                yield mem
            finally:
                await mem.aclose()
        return
    server: LiveKitServer = request.getfixturevalue("live_server")
    service = real_service(server, tmp_path, **extra)
    await service.start()
    real = RealStage(server=server, service=service)
    try:
        yield real
    finally:
        await real.aclose()
        await service.stop()
