"""Capacity on the real server: a burst of native dispatches larger than the replica's capacity
ends with every room served (deferred dispatch), and no room waits forever.

Runs in the ``livekit`` tier only (``make test-livekit``). The jobs are cheap listening jobs: the
transcription-only pipeline (``["stt", "return"]``) with its speech recognition on a loopback
OpenAI-compatible fake, so the burst measures dispatch, not models.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest
from listening import listening_agent
from livekit_env import LiveKitServer, RealCaller, ServiceProcess
from openai_server import running_server
from stage import ADMIN, AGENT_NAME, real_service

pytestmark = [pytest.mark.livekit, pytest.mark.timeout(180)]


async def wait_registered(service: ServiceProcess, *, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while "worker_registered" not in service.tail(400):  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.05)


async def agent_in_room(caller: RealCaller, *, within: float) -> str:
    async with asyncio.timeout(within):
        while True:
            for p in caller.room.remote_participants.values():
                if p.identity.startswith("ai-agent-"):
                    return str(p.identity)
            await asyncio.sleep(0.05)


def metric(text: str, name: str, outcome: str) -> float:
    m = re.search(rf'^{name}_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_a_burst_over_capacity_ends_with_every_room_served(
    live_server: LiveKitServer, tmp_path: Path
) -> None:
    rooms = [f"burst-{i}" for i in range(6)]
    async with running_server() as stt:
        service = real_service(
            live_server, tmp_path, max_jobs=2,
            agent=listening_agent(stt_url=stt.base_url, artifacts=tmp_path / "jobs"),
        )
        callers = [RealCaller(server=live_server, room=room, identity=f"caller-{room}")
                   for room in rooms]
        lk = live_server.api()
        try:
            await service.start()
            await wait_registered(service)
            await asyncio.gather(*(c.join() for c in callers))
            from livekit import api

            # The whole burst at once: the server offers each job to our (only) worker.
            await asyncio.gather(*(lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room))
                for room in rooms))

            served: dict[str, str] = {}
            deferred_seen = peak_active = 0

            async def serve(caller: RealCaller) -> None:
                # Each caller stays until an agent joins, then hangs up: the job ends, a slot
                # frees, and a deferred room gets its dispatch again.
                with contextlib.suppress(TimeoutError):  # a room left unserved fails below
                    served[caller.room_name] = await agent_in_room(caller, within=90)
                await caller.leave()

            async def watch() -> None:
                nonlocal deferred_seen, peak_active
                while True:
                    r = await service.client.get(
                        "/jobs", headers={"authorization": f"Bearer {ADMIN}"})
                    deferred_seen = max(deferred_seen, r.json()["deferred"]["waiting"])
                    peak_active = max(peak_active, r.json()["active_jobs"])
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch(), name="test.watch-deferred")
            try:
                await asyncio.gather(*(serve(c) for c in callers))
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            assert sorted(served) == rooms, service.tail(300)
            assert len(set(served.values())) == len(rooms)  # one agent (job) per room
            assert deferred_seen >= 1  # rooms were seen waiting in GET /jobs
            assert peak_active <= 2  # never beyond capacity, re-issues included

            metrics = (await service.client.get("/metrics")).text
            name = "external_agent_deferred_dispatch_events"
            # How many offers found the replica full depends on how fast the first jobs end;
            # every room that waited was dispatched again, none was dropped or expired.
            deferred = metric(metrics, name, "deferred")
            assert deferred >= 1
            assert metric(metrics, name, "reissued") == deferred
            assert metric(metrics, name, "expired") == metric(metrics, name, "failed") == 0
            r = await service.client.get("/jobs", headers={"authorization": f"Bearer {ADMIN}"})
            assert r.json()["deferred"]["waiting"] == 0
        finally:
            for c in callers:
                await c.leave()
            await lk.aclose()
            await service.stop()
