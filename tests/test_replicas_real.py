"""Several replicas of ``external-agent serve`` sharing a real ``redis-server`` (``registry:
redis``), against a real ``livekit-server``: one job per ``job_id`` whichever replica an offer
reaches, capacity per replica, native dispatches spread, a drained replica leaves the others
working, and a Redis that stops, hangs or restarts empty gives clear answers and never a second
agent for a job."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from livekit_env import LiveKitServer, RealCaller, ServiceProcess
from redis_env import RedisServer
from stage import ADMIN, real_service, signed_offer

pytestmark = [pytest.mark.livekit, pytest.mark.embedded, pytest.mark.timeout(240)]

ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}
BASE_PORT = 18081

Replicas = Callable[..., Coroutine[Any, Any, list[ServiceProcess]]]


@pytest.fixture
async def replicas(live_server: LiveKitServer, redis_server: RedisServer,
                   tmp_path: Path) -> AsyncIterator[Replicas]:
    """``await replicas(n, **config)``: n services on the shared Redis, stopped at teardown."""
    started: list[ServiceProcess] = []

    async def make(n: int, **config: Any) -> list[ServiceProcess]:
        new = [
            real_service(live_server, tmp_path / f"replica-{i}", port=BASE_PORT + i,
                         registry="redis", redis_url=redis_server.url, **config)
            for i in range(len(started), len(started) + n)
        ]
        started.extend(new)
        # Together: warming the models is mostly one core's work per process.
        await asyncio.gather(*(service.start() for service in new))
        return new

    try:
        yield make
    finally:
        await asyncio.gather(*(s.stop() for s in started))


async def send(service: ServiceProcess, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    return await service.client.post("/livekit/agent", content=raw, headers=headers)


async def jobs_of(service: ServiceProcess) -> list[dict[str, Any]]:
    r = await service.client.get("/jobs", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    data = r.json()
    jobs: list[dict[str, Any]] = data["jobs"] if isinstance(data, dict) else data
    return jobs


async def agents_in(server: LiveKitServer, room: str) -> list[str]:
    from livekit import api

    lk = server.api()
    try:
        resp = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    finally:
        await lk.aclose()
    return [p.identity for p in resp.participants if p.identity.startswith("ai-agent-")]


async def wait_for(check: Callable[[], Coroutine[Any, Any, bool]], *, within: float,
                   what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"not within {within} s: {what}")


async def caller(server: LiveKitServer, room: str, identity: str) -> RealCaller:
    c = RealCaller(server=server, room=room, identity=identity)
    await c.join()
    return c


async def watch_agents(server: LiveKitServer, room: str, seconds: float) -> int:
    """The most agent participants seen at once in ``room`` over ``seconds``."""
    peak = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        peak = max(peak, len(await agents_in(server, room)))
        await asyncio.sleep(0.2)
    return peak


async def test_the_same_webhook_sent_to_every_replica_gives_one_job_and_one_agent(
    live_server: LiveKitServer, replicas: Replicas,
) -> None:
    services = await replicas(3)
    person = await caller(live_server, "dup-1", "dana")
    try:
        raw, headers = signed_offer(live_server, job_id="AJ_dup1", room="dup-1")
        answers = await asyncio.gather(*(send(s, raw, headers) for s in services))
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        identities = {a.json()["participant_identity"] for a in answers}
        assert identities == {"ai-agent-AJ_dup1"}
        owners = [i for i, s in enumerate(services)
                  if any(j["job_id"] == "AJ_dup1" for j in await jobs_of(s))]
        assert len(owners) == 1, owners
        await wait_for(lambda: _has_agent(live_server, "dup-1"), within=20, what="agent joined")
        # retries after the start, to every replica again: still that one job
        again = await asyncio.gather(*(send(s, raw, headers) for s in services))
        assert all(a.status_code == 200 and a.json()["accepted"] for a in again)
        assert await watch_agents(live_server, "dup-1", 3.0) == 1
        for i, s in enumerate(services):
            mine = [j for j in await jobs_of(s) if j["job_id"] == "AJ_dup1"]
            assert len(mine) == (1 if i in owners else 0)
    finally:
        await person.leave()


async def _has_agent(server: LiveKitServer, room: str) -> bool:
    return len(await agents_in(server, room)) >= 1


async def test_each_replica_keeps_its_own_capacity(
    live_server: LiveKitServer, replicas: Replicas,
) -> None:
    first, second = await replicas(2, max_jobs=1)
    a = await send(first, *signed_offer(live_server, job_id="AJ_cap1", room="cap-1"))
    assert a.status_code == 200 and a.json()["accepted"], a.text
    full = await send(first, *signed_offer(live_server, job_id="AJ_cap2", room="cap-2"))
    assert full.status_code == 503 and "retry-after" in full.headers, full.text
    b = await send(second, *signed_offer(live_server, job_id="AJ_cap2", room="cap-2"))
    assert b.status_code == 200 and b.json()["accepted"], b.text
    assert [j["job_id"] for j in await jobs_of(first)] == ["AJ_cap1"]
    assert [j["job_id"] for j in await jobs_of(second)] == ["AJ_cap2"]
    assert (await first.client.get("/health")).json()["active_jobs"] == 1
    assert (await second.client.get("/health")).json()["active_jobs"] == 1


async def _dispatch(server: LiveKitServer, room: str) -> None:
    from livekit import api

    lk = server.api()
    try:
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="external-agent", room=room))
    finally:
        await lk.aclose()


async def _rooms_by_replica(services: list[ServiceProcess]) -> list[set[str]]:
    return [{j["room"] for j in await jobs_of(s) if j["source"] == "dispatch"} for s in services]


async def test_native_dispatches_from_the_server_spread_across_replicas(
    live_server: LiveKitServer, replicas: Replicas,
) -> None:
    services = await replicas(3, max_jobs=2)
    rooms = [f"spread-{i}" for i in range(4)]
    people = [await caller(live_server, room, f"p{i}") for i, room in enumerate(rooms)]
    try:
        await asyncio.gather(*(_dispatch(live_server, room) for room in rooms))

        async def all_placed() -> bool:
            placed = await _rooms_by_replica(services)
            return set().union(*placed) == set(rooms)

        await wait_for(all_placed, within=30, what="every room got a job")
        placed = await _rooms_by_replica(services)
        assert sum(len(p) for p in placed) == len(rooms), placed  # one job per room
        assert all(len(p) <= 2 for p in placed), placed  # nobody above its capacity
        assert sum(1 for p in placed if p) >= 2, placed
        for room in rooms:
            assert len(await agents_in(live_server, room)) <= 1
    finally:
        for person in people:
            await person.leave()


async def test_a_draining_replica_leaves_the_others_taking_jobs(
    live_server: LiveKitServer, replicas: Replicas,
) -> None:
    first, second = await replicas(2)
    person = await caller(live_server, "drain-a", "ola")
    late = await caller(live_server, "drain-b", "pam")
    try:
        r = await send(first, *signed_offer(live_server, job_id="AJ_da", room="drain-a"))
        assert r.status_code == 200 and r.json()["accepted"], r.text
        await wait_for(lambda: _has_agent(live_server, "drain-a"), within=20, what="agent")
        first.signal(signal.SIGTERM)  # drains: its call goes on, it takes nothing new

        async def not_ready() -> bool:
            return (await first.client.get("/ready")).status_code == 503

        await wait_for(not_ready, within=5, what="drained replica not ready")
        refused = await send(first, *signed_offer(live_server, job_id="AJ_db", room="drain-b"))
        assert refused.status_code == 503 and "retry-after" in refused.headers
        await _dispatch(live_server, "drain-b")  # the server's own dispatch

        async def placed_on_second() -> bool:
            return any(j["room"] == "drain-b" for j in await jobs_of(second))

        await wait_for(placed_on_second, within=20, what="the other replica took it")
        hooked = await send(second, *signed_offer(live_server, job_id="AJ_dc", room="drain-c"))
        assert hooked.status_code == 200 and hooked.json()["accepted"], hooked.text
        assert any(j["job_id"] == "AJ_da" and j["state"] in ("connecting", "running")
                   for j in await jobs_of(first))
    finally:
        await person.leave()
        await late.leave()
    assert await first.wait_exit(40) == 0


async def test_redis_down_hung_or_restarted_empty_gives_clear_answers_never_a_second_agent(
    live_server: LiveKitServer, redis_server: RedisServer, replicas: Replicas,
) -> None:
    owner, other = await replicas(2)
    person = await caller(live_server, "redis-1", "quinn")
    try:
        job = signed_offer(live_server, job_id="AJ_r1", room="redis-1")
        assert (await send(owner, *job)).json()["accepted"]
        await wait_for(lambda: _has_agent(live_server, "redis-1"), within=20, what="agent")

        redis_server.kill()  # stopped: connections refused
        retry = await send(other, *job)
        assert retry.status_code == 503 and "retry-after" in retry.headers, retry.text
        assert "registry" in retry.json()["error"]
        fresh = await send(other, *signed_offer(live_server, job_id="AJ_r2", room="redis-2"))
        assert fresh.status_code == 503, fresh.text

        async def unready(service: ServiceProcess) -> bool:
            r = await service.client.get("/ready")
            return r.status_code == 503 and "registry" in r.json()["reason"]

        await wait_for(lambda: unready(other), within=5, what="not ready without Redis")
        health = (await other.client.get("/health")).json()
        assert health["registry"] != "ok", health

        redis_server.start()  # back, and empty: the claim of AJ_r1 is gone with it
        outcomes: list[int] = []
        async with asyncio.timeout(15):
            while True:
                r = await send(other, *job)
                outcomes.append(r.status_code)
                if r.status_code == 200:
                    break
                assert r.status_code == 503, r.text
                await asyncio.sleep(0.2)
        assert not any(j["job_id"] == "AJ_r1" for j in await jobs_of(other)), outcomes
        assert await watch_agents(live_server, "redis-1", 2.0) == 1

        async def ready(service: ServiceProcess) -> bool:
            return (await service.client.get("/ready")).status_code == 200

        await wait_for(lambda: ready(other), within=10, what="ready again")
        ok = await send(other, *signed_offer(live_server, job_id="AJ_r2", room="redis-2"))
        assert ok.status_code == 200 and ok.json()["accepted"], ok.text
        assert any(j["job_id"] == "AJ_r2" for j in await jobs_of(other))

        redis_server.pause()  # hung: connections time out instead of being refused
        started = time.monotonic()
        hung = await send(other, *signed_offer(live_server, job_id="AJ_r3", room="redis-3"))
        assert hung.status_code == 503 and "retry-after" in hung.headers, hung.text
        assert time.monotonic() - started < 10
        redis_server.resume()
        await wait_for(lambda: ready(other), within=10, what="ready after the hang")
        assert await watch_agents(live_server, "redis-1", 1.0) == 1
    finally:
        redis_server.resume()
        await person.leave()
