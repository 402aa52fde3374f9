"""The service against a real ``livekit-server``: the two LiveKit doors, the drain, a server that
dies mid-call, a burst at capacity. Each test runs ``external-agent serve`` as a user would
(:func:`stage.real_service`) and talks to it through real SDK clients."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from livekit_env import LiveKitServer, RealCaller
from stage import GREETING, SECRET, RealStage, real_service

pytestmark = [pytest.mark.livekit, pytest.mark.embedded, pytest.mark.timeout(150)]

ADMIN_HEADERS = {"authorization": "Bearer stage-admin-token-0123456789abcdef"}


def _agent_final(data: dict[str, Any]) -> bool:
    return bool(data["is_final"]) and str(data["participant_id"]).startswith("ai-agent-")


async def _jobs_in(service: Any, room: str) -> list[dict[str, Any]]:
    r = await service.client.get("/jobs", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    data = r.json()
    jobs: list[dict[str, Any]] = data["jobs"] if isinstance(data, dict) else data
    return [j for j in jobs if j["room"] == room]


async def _job_in(service: Any, room: str, states: tuple[str, ...], *,
                  within: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            for job in await _jobs_in(service, room):
                if job["state"] in states:
                    r = await service.client.get(f"/jobs/{job['job_id']}",
                                                 headers=ADMIN_HEADERS)
                    full: dict[str, Any] = r.json()
                    return full
            await asyncio.sleep(0.1)


async def _caller(server: LiveKitServer, room: str, identity: str) -> RealCaller:
    caller = RealCaller(server=server, room=room, identity=identity)
    await caller.join()
    await caller.start_microphone()
    return caller


async def _dispatch(server: LiveKitServer, room: str, agent_name: str = "external-agent") -> None:
    from livekit import api

    lk = server.api()
    try:
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=agent_name, room=room))
    finally:
        await lk.aclose()


async def test_native_dispatch_job_completes_with_its_record_when_the_caller_leaves(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    """Defect (a): the server's JobTermination, sent because the agent left, arrived while the
    job was finishing and turned it into ``cancelled`` without its record."""
    service = real_service(live_server, tmp_path)
    await service.start()
    caller = await _caller(live_server, "native-1", "erin")
    try:
        await _dispatch(live_server, "native-1")
        greeting = await caller.wait_message("transcript_chunk", _agent_final)
        assert greeting.data["text"] == GREETING
        seen = len(caller.received)
        await caller.send_text("My name is Erin Hale.")
        await caller.wait_message("transcript_chunk", _agent_final, after=seen)
        running = await _job_in(service, "native-1", ("running",))
        assert running["source"] == "dispatch"
    finally:
        await caller.leave()
    try:
        job = await _job_in(service, "native-1", ("completed", "failed", "cancelled"))
        assert job["state"] == "completed", job
        assert job["reason"] == "room_empty"
        record = job["record"]
        assert [t["text"] for t in record["transcript"] if t["participant_id"] == "erin"] == [
            "My name is Erin Hale."]
        assert record["todo_list"] and record["artifact"]
        artifact = json.loads(Path(record["artifact"]).read_text())  # noqa: ASYNC240
        assert artifact["end_reason"] == "room_empty"
    finally:
        await service.stop()


async def test_livekit_webhook_rule_puts_the_agent_in_a_matching_room(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    service = real_service(live_server, tmp_path)
    await service.start()
    try:
        caller = await _caller(live_server, "hook-1", "frank")  # room_started -> the rule
        try:
            greeting = await caller.wait_message("transcript_chunk", _agent_final)
            assert greeting.data["text"] == GREETING
            job = await _job_in(service, "hook-1", ("running",))
            assert job["source"] == "livekit_webhook"
        finally:
            await caller.leave()
        ended = await _job_in(service, "hook-1", ("completed", "failed", "cancelled"))
        assert ended["state"] == "completed", ended
        other = await _caller(live_server, "nohook-1", "gina")  # no rule matches
        try:
            await asyncio.sleep(2.0)
            assert other.messages() == [] and await _jobs_in(service, "nohook-1") == []
        finally:
            await other.leave()
    finally:
        await service.stop()


async def test_sigterm_drains_a_live_call_refuses_new_ones_and_keeps_the_record(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    service = real_service(live_server, tmp_path)
    await service.start()
    caller = await _caller(live_server, "drain-1", "hank")
    try:
        helper = RealStage(server=live_server, service=service)
        r = await helper.dispatch(job_id="AJ_drain1", room="drain-1")
        assert r.json()["accepted"] is True
        await caller.wait_message("transcript_chunk", _agent_final)
        service.signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            while (await service.client.get("/ready")).status_code != 503:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        refused = await helper.dispatch(job_id="AJ_drain2", room="drain-2")
        assert refused.status_code == 503 and "retry-after" in refused.headers
        # the call goes on during the drain: a typed turn is still answered
        seen = len(caller.received)
        await caller.send_text("Are you still there?")
        await caller.wait_message("transcript_chunk", _agent_final, after=seen)
    finally:
        await caller.leave()
    assert await service.wait_exit(30) == 0
    artifacts = [json.loads(p.read_text()) for p in (tmp_path / "jobs").glob("*.json")]
    assert [a["end_reason"] for a in artifacts if a["job_id"] == "AJ_drain1"] == ["room_empty"]
    await service.stop()
    assert SECRET  # the job came through the signed door


async def test_a_server_restart_mid_call_ends_or_resumes_the_job_and_leaks_nothing(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    service = real_service(live_server, tmp_path)
    await service.start()
    caller = await _caller(live_server, "restart-1", "ivy")
    try:
        await _dispatch(live_server, "restart-1")
        await caller.wait_message("transcript_chunk", _agent_final)
        await _job_in(service, "restart-1", ("running",))
        live_server.restart(down_for=1.0)
        job = None
        try:  # the SDKs reconnect (a full reconnect: the server lost the room) ...
            async with asyncio.timeout(20):
                while True:
                    seen = len(caller.received)
                    await caller.send_text("Hello again.")
                    try:
                        await caller.wait_message("transcript_chunk", _agent_final,
                                                  after=seen, within=2.0)
                        break
                    except TimeoutError:
                        job = (await _jobs_in(service, "restart-1"))[0]
                        if job["state"] in ("completed", "failed", "cancelled"):
                            break
        except TimeoutError:
            pytest.fail(f"neither resumed nor ended: {await _jobs_in(service, 'restart-1')}")
    finally:
        await caller.leave()
    # ... or the job ends with a clear reason; either way it ends and leaves nothing running
    ended = await _job_in(service, "restart-1", ("completed", "failed", "cancelled"), within=40)
    assert ended["reason"], ended
    health = (await service.client.get("/health")).json()
    assert health["active_jobs"] == 0
    await service.stop()
    assert service.returncode == 0


async def test_a_burst_of_dispatches_never_puts_more_agents_in_rooms_than_capacity(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    """Defect (b): in bursts of native dispatches at ``max_jobs=3``, 4 or 5 agents joined."""
    from livekit import api

    service = real_service(live_server, tmp_path, max_jobs=2)
    await service.start()
    rooms = [f"burst-{i}" for i in range(6)]
    callers = [await _caller(live_server, room, f"c{i}") for i, room in enumerate(rooms)]
    lk = live_server.api()
    peak = 0
    try:
        await asyncio.gather(*(_dispatch(live_server, room) for room in rooms))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        while loop.time() < deadline:
            agents = 0
            for room in rooms:
                resp = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
                agents += sum(p.identity.startswith("ai-agent-") for p in resp.participants)
            health = (await service.client.get("/health")).json()
            assert health["active_jobs"] <= 2
            peak = max(peak, agents)
            await asyncio.sleep(0.2)
        assert 1 <= peak <= 2, peak
    finally:
        await lk.aclose()
        for caller in callers:
            await caller.leave()
        await service.stop()


async def test_a_message_typed_the_moment_a_caller_joins_is_answered(
    live_server: LiveKitServer, tmp_path: Path,
) -> None:
    """The caller's data channel can beat the room's news of the caller to the agent; the SDK
    then reports no sender, and the message was dropped."""
    service = real_service(live_server, tmp_path)
    await service.start()
    try:
        helper = RealStage(server=live_server, service=service)
        r = await helper.dispatch(job_id="AJ_early1", room="early-1")
        assert r.json()["accepted"] is True
        await helper.wait_job("AJ_early1", ("running",))
        caller = RealCaller(server=live_server, room="early-1", identity="jill")
        await caller.join()
        await caller.send_text("My name is Jill Early.")  # at once, no wait
        try:
            answer = await caller.wait_message(
                "transcript_chunk",
                lambda d: d["is_final"] and d["participant_id"] == "jill", within=15)
            assert answer.data["text"] == "My name is Jill Early."
        finally:
            await caller.leave()
        job = await helper.wait_job("AJ_early1")
        typed = [t["text"] for t in job["record"]["transcript"] if t["participant_id"] == "jill"]
        assert typed == ["My name is Jill Early."]
    finally:
        await service.stop()
