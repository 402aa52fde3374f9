"""Leases, fencing tokens and checkpoints of running jobs, in Redis (failover's shared state).

Per job ``J`` (``P`` is the prefix):

- ``P:lease:J`` holds ``"<replica>|<token>"`` and expires ``lease_ms`` after its last renewal;
- ``P:checkpoint:J`` is the job's latest checkpoint (JSON), written only by the lease holder;
- ``P:fence:J`` counts the job's leases: every new holder gets the next *fencing token*;
- the sorted set ``P:leases`` scores each job with its lease's expiry (Redis's own clock), so a
  replica finds the jobs whose holder stopped renewing without scanning the keyspace.

Every operation is one Lua script, so a check and the write it guards are atomic: a checkpoint
or renewal from a replica that no longer holds the lease changes nothing and tells it so. Time
is Redis's (``TIME``), never a replica's clock.

If Redis restarts empty, every lease is gone at once; a holder that renews then finds neither
its lease, nor the checkpoint, nor the score, and re-creates all three with its own token (the
fence counter moved up to it) rather than stopping a call nobody else can have claimed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from app.errors import ServiceError

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: lease, leases, checkpoint, fence; ARGV: job_id, owner, lease_ms, doc, ttl_s
_ACQUIRE = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[5])
redis.call('SET', KEYS[1], ARGV[2] .. '|' .. token, 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now + ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
return token
"""

# KEYS: lease, leases, checkpoint, fence; ARGV: job_id, holder, lease_ms, token, ttl_s, doc
# (doc empty: renew only). 1: renewed; 2: re-created after Redis lost everything; 0: lost.
_KEEP = _NOW + """
local held = redis.call('GET', KEYS[1])
local status = 1
if held ~= ARGV[2] then
  if held or redis.call('EXISTS', KEYS[3]) == 1 or redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    return 0
  end
  local fence = tonumber(redis.call('GET', KEYS[4]) or '0')
  if fence > tonumber(ARGV[4]) then return 0 end
  redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[5])
  status = 2
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now + ARGV[3], ARGV[1])
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[5]) end
return status
"""

# KEYS: lease, leases, checkpoint; ARGV: job_id, holder, mode ('release' | 'abandon')
_LET_GO = """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] == 'release' then
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
return 1
"""

# KEYS: leases; ARGV: limit
_EXPIRED = _NOW + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
"""

# KEYS: lease, leases, checkpoint, fence; ARGV: job_id, owner, lease_ms, ttl_s
_CLAIM = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then redis.call('ZADD', KEYS[2], now + left, ARGV[1]) end
  return {0}
end
local doc = redis.call('GET', KEYS[3])
if not doc then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {-1}
end
local expired = redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0'
local token = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('SET', KEYS[1], ARGV[2] .. '|' .. token, 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now + ARGV[3], ARGV[1])
return {token, doc, expired, tostring(now)}
"""

KeepResult = Literal["kept", "recreated", "lost"]


class FailoverStoreError(ServiceError):
    """Redis could not be reached (or answered an error) for a failover operation."""

    retryable = True


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this replica just took over: its new fencing token and its last checkpoint."""

    job_id: str
    token: int
    holder: str
    document: str
    expired_at: float
    """When the previous holder's lease ran out (s since the epoch, Redis's clock; 0 if
    unknown)."""
    claimed_at: float


class FailoverStore:
    def __init__(
        self,
        *,
        client: Any,
        owner: str,
        lease_seconds: float,
        checkpoint_ttl: float,
        prefix: str = "external-agent:failover:",
    ) -> None:
        self._client = client
        self.owner = owner
        self.lease_ms = max(100, int(lease_seconds * 1000))
        self._ttl = max(60, int(checkpoint_ttl))
        self._prefix = prefix
        self._scripts = {
            name: client.register_script(source)
            for name, source in (("acquire", _ACQUIRE), ("keep", _KEEP), ("let_go", _LET_GO),
                                 ("expired", _EXPIRED), ("claim", _CLAIM))
        }

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> FailoverStore:
        from redis.asyncio import Redis

        lease = float(kwargs["lease_seconds"])
        # A call that cannot reach Redis must fail well inside a lease, not hang.
        timeout = max(0.2, min(2.0, lease / 4))
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client=client, **kwargs)

    def _keys(self, job_id: str) -> list[str]:
        p = self._prefix
        return [f"{p}lease:{job_id}", f"{p}leases", f"{p}checkpoint:{job_id}", f"{p}fence:{job_id}"]

    def holder(self, token: int) -> str:
        return f"{self.owner}|{token}"

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        task = asyncio.current_task()
        try:
            reply = await self._scripts[name](keys=keys, args=args)
        except Exception as e:  # redis-py raises many types; translate at the edge
            if task is not None and task.cancelling():
                # a cancellation the client turned into an error of its own: still a cancel
                raise asyncio.CancelledError from e
            raise FailoverStoreError(f"failover store unavailable: {type(e).__name__}") from e
        if task is not None and task.cancelling():
            raise asyncio.CancelledError  # the client swallowed a cancellation: pass it on
        return reply

    async def acquire(self, job_id: str, document: str) -> int | None:
        """Take the lease of a job starting here and write its first checkpoint; its token, or
        ``None`` when someone holds it already."""
        token = await self._run("acquire", self._keys(job_id),
                                [job_id, self.owner, self.lease_ms, document, self._ttl])
        return int(token) or None

    async def keep(self, job_id: str, token: int, document: str | None = None) -> KeepResult:
        """Renew the lease (and write ``document`` as the checkpoint), fenced by ``token``."""
        status = await self._run("keep", self._keys(job_id), [
            job_id, self.holder(token), self.lease_ms, token, self._ttl, document or "",
        ])
        return {1: "kept", 2: "recreated"}.get(int(status), "lost")  # type: ignore[return-value]

    async def release(self, job_id: str, token: int) -> bool:
        """The job ended: drop its lease and checkpoint (fenced)."""
        keys = self._keys(job_id)[:3]
        return bool(await self._run("let_go", keys, [job_id, self.holder(token), "release"]))

    async def abandon(self, job_id: str, token: int) -> bool:
        """Give the job up at once, checkpoint kept: the next replica that looks takes it."""
        keys = self._keys(job_id)[:3]
        return bool(await self._run("let_go", keys, [job_id, self.holder(token), "abandon"]))

    async def expired(self, limit: int) -> list[str]:
        """Up to ``limit`` jobs whose lease has run out, longest gone first."""
        found = await self._run("expired", [f"{self._prefix}leases"], [max(1, limit)])
        return [j.decode() if isinstance(j, bytes) else str(j) for j in found]

    async def claim(self, job_id: str) -> Claim | None:
        """Take over ``job_id`` if its lease has run out and it left a checkpoint."""
        reply = await self._run("claim", self._keys(job_id),
                                [job_id, self.owner, self.lease_ms, self._ttl])
        if int(reply[0]) <= 0:
            return None
        token = int(reply[0])
        document = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        return Claim(job_id=job_id, token=token, holder=self.holder(token), document=document,
                     expired_at=float(reply[2]) / 1000, claimed_at=float(reply[3]) / 1000)

    async def aclose(self) -> None:
        await self._client.aclose()
