"""The failover store's scripts: leases, fencing, checkpoints, claims (fakeredis with Lua)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import fakeredis
import pytest

from app.jobs.failover_store import FailoverStore, FailoverStoreError

LEASE = 0.3


@pytest.fixture
async def server() -> AsyncIterator[fakeredis.FakeServer]:
    yield fakeredis.FakeServer()


def store(server: fakeredis.FakeServer, owner: str, lease: float = LEASE) -> FailoverStore:
    client = fakeredis.FakeAsyncRedis(server=server)
    return FailoverStore(client=client, owner=owner, lease_seconds=lease, checkpoint_ttl=600)


async def test_a_job_has_one_holder_and_fenced_writes(server: fakeredis.FakeServer) -> None:
    a, b = store(server, "a"), store(server, "b")
    token = await a.acquire("J1", '{"n": 0}')
    assert token == 1
    assert await b.acquire("J1", "{}") is None  # held: nobody else starts it
    assert await a.keep("J1", token, '{"n": 1}') == "kept"
    assert await b.claim("J1") is None  # alive
    assert await b.expired(10) == []
    assert await a.keep("J1", token + 1) == "lost"  # a token it was never given


async def test_an_expired_lease_is_claimed_once_with_a_higher_token(
    server: fakeredis.FakeServer,
) -> None:
    a, b, c = store(server, "a"), store(server, "b"), store(server, "c")
    token = await a.acquire("J1", '{"n": 0}')
    assert token is not None
    assert await a.keep("J1", token, '{"n": 2}') == "kept"
    await asyncio.sleep(LEASE + 0.1)
    assert await b.expired(10) == ["J1"]
    claim = await b.claim("J1")
    assert claim is not None and claim.token == 2 and claim.document == '{"n": 2}'
    assert claim.holder == "b|2"
    assert claim.claimed_at >= claim.expired_at > 0
    assert await c.claim("J1") is None  # one claim wins
    # The old holder comes back: every write is refused, the checkpoint stays b's.
    assert await a.keep("J1", token, '{"n": 3}') == "lost"
    assert await a.release("J1", token) is False
    assert await b.keep("J1", 2, '{"n": 4}') == "kept"
    assert await c.expired(10) == []


async def test_release_forgets_the_job_and_abandon_hands_it_on(
    server: fakeredis.FakeServer,
) -> None:
    a, b = store(server, "a", lease=30), store(server, "b", lease=30)
    t1 = await a.acquire("done", "{}")
    t2 = await a.acquire("handed", '{"h": 1}')
    assert t1 is not None and t2 is not None
    assert await a.release("done", t1) is True
    assert await a.abandon("handed", t2) is True
    assert await b.expired(10) == ["handed"]  # at once, not after 30 s
    assert await b.claim("done") is None
    claim = await b.claim("handed")
    assert claim is not None and claim.document == '{"h": 1}'


async def test_a_lease_without_checkpoint_is_dropped_not_claimed(
    server: fakeredis.FakeServer,
) -> None:
    a, b = store(server, "a"), store(server, "b")
    token = await a.acquire("J1", "{}")
    assert token is not None
    client = fakeredis.FakeAsyncRedis(server=server)
    await client.delete("external-agent:failover:checkpoint:J1")
    await asyncio.sleep(LEASE + 0.1)
    assert await b.claim("J1") is None
    assert await b.expired(10) == []


async def test_redis_restarting_empty_does_not_stop_the_holder(
    server: fakeredis.FakeServer,
) -> None:
    a, b = store(server, "a"), store(server, "b")
    token = await a.acquire("J1", "{}")
    assert token is not None
    await fakeredis.FakeAsyncRedis(server=server).flushall()  # a restart without persistence
    assert await a.keep("J1", token) == "recreated"
    assert await a.keep("J1", token, '{"again": 1}') == "kept"
    assert await b.claim("J1") is None
    # ...and a token from before a newer one is never re-created
    await fakeredis.FakeAsyncRedis(server=server).set("external-agent:failover:fence:J2", 5)
    assert await a.keep("J2", 3) == "lost"


async def test_unreachable_redis_is_a_clear_error() -> None:
    from redis.asyncio import Redis

    lost = FailoverStore(client=Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2),
                         owner="a", lease_seconds=1, checkpoint_ttl=600)
    with pytest.raises(FailoverStoreError, match="failover store unavailable"):
        await lost.acquire("J1", "{}")
    await lost.aclose()
