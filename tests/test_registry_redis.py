"""The Redis job registry across a Redis that restarts empty or cannot be reached (fakeredis; the
real ``redis-server`` with real replicas is in ``test_replicas_real.py``)."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from app.jobs.records import StoredAnswer
from app.jobs.registry import RedisJobRegistry, RegistryError

ANSWER = StoredAnswer(participant_identity="ai-agent-AJ_1", participant_name="agent",
                      participant_metadata="")


def registry(server: fakeredis.FakeServer, **kw: float) -> RedisJobRegistry:
    return RedisJobRegistry(client=fakeredis.FakeAsyncRedis(server=server), ttl=60,
                            watch_interval=kw.pop("watch_interval", 0.05), **kw)


async def test_a_claim_lost_to_an_empty_restart_is_never_claimed_again_elsewhere() -> None:
    server = fakeredis.FakeServer()
    a, b = registry(server), registry(server)
    await a.start()
    await b.start()
    try:
        await asyncio.sleep(0.8)  # past the settle of a fresh store
        assert await a.claim("AJ_1", ANSWER) is None
        assert await b.claim("AJ_1", ANSWER) == ANSWER
        await fakeredis.FakeAsyncRedis(server=server).flushall()  # restarted, empty
        outcomes: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while loop.time() < deadline:
            try:
                first = await b.claim("AJ_1", ANSWER)
            except RegistryError as e:
                outcomes.append(e.message)
            else:
                assert first == ANSWER, "b claimed a job that a still runs"
                outcomes.append("duplicate")
                break
            await asyncio.sleep(0.02)
        assert outcomes[-1] == "duplicate"
        assert any("recovering" in o or "restarted" in o for o in outcomes)
        assert await b.get("AJ_1") == ANSWER  # a re-asserted its claim
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_unreachable_store_is_a_clear_problem_and_recovers() -> None:
    server = fakeredis.FakeServer()
    reg = registry(server, settle=0)
    await reg.start()
    try:
        assert reg.problem is None
        server.connected = False
        with pytest.raises(RegistryError, match="unavailable"):
            await reg.claim("AJ_2", ANSWER)
        assert reg.problem is not None and "unavailable" in reg.problem
        server.connected = True
        async with asyncio.timeout(3):
            while reg.problem is not None:  # noqa: ASYNC110 - the watcher clears it
                await asyncio.sleep(0.02)
        assert await reg.claim("AJ_2", ANSWER) is None
    finally:
        await reg.aclose()


async def test_a_forgotten_claim_is_not_reasserted() -> None:
    server = fakeredis.FakeServer()
    reg = registry(server, settle=0)
    await reg.start()
    try:
        assert await reg.claim("AJ_3", ANSWER) is None
        await reg.forget("AJ_3")
        await fakeredis.FakeAsyncRedis(server=server).flushall()
        async with asyncio.timeout(3):
            while True:
                try:
                    assert await reg.claim("AJ_4", ANSWER) is None
                    break
                except RegistryError:
                    await asyncio.sleep(0.02)
        assert await reg.get("AJ_3") is None and await reg.get("AJ_4") == ANSWER
    finally:
        await reg.aclose()
