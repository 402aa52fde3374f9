"""Failover on the real stack: from SIGKILL of the replica running a call to the agent's voice
heard again by the caller.

Inside a private network namespace (it re-runs itself through ``scripts/netns-run``): a real
``livekit-server``, a real ``redis-server``, three ``external-agent serve`` replicas with
``failover.enabled`` and the embedded stack, a real ``livekit`` SDK caller per round. Each round:
a call is offered to a live replica, the greeting is heard (its dispatch-to-voice time is the
baseline: what a fresh agent takes to be heard), the owner is killed, and the time until the
next leg's voice (the first agent sound after its ``resumed`` status) is measured; the killed
replica is started again for the next round.

The takeover cannot be faster than the lease (a lost replica is only known by its lease running
out); the headline is what it costs beyond that, against a fresh dispatch in the same run.

Run: ``.venv/bin/python bench/bench_failover.py [rounds] [lease_seconds]`` (needs the
livekit-server binary, ``make livekit-server``, and ``redis-server``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from livekit_env import (  # noqa: E402
    LiveKitServer,
    RealCaller,
    ServiceProcess,
    in_private_netns,
    server_binary,
)
from redis_env import RedisServer  # noqa: E402
from stage import ADMIN, GREETING, real_service, signed_offer  # noqa: E402

BASE_PORT = 18111


def _replica(server: LiveKitServer, redis: RedisServer, work: Path, i: int,
             lease: float) -> ServiceProcess:
    return real_service(
        server, work / f"replica-{i}", port=BASE_PORT + i, max_jobs=2, registry="redis",
        redis_url=redis.url, worker={"enabled": False}, log_level="warning",
        failover={"enabled": True, "lease_seconds": lease, "scan_interval": 0.25,
                  "replica": f"r{i}"},
    )


async def _owner(replicas: list[ServiceProcess], job_id: str) -> int:
    for i, service in enumerate(replicas):
        r = await service.client.get(f"/jobs/{job_id}",
                                     headers={"authorization": f"Bearer {ADMIN}"})
        if r.status_code == 200 and r.json()["state"] == "running":
            return i
    raise RuntimeError(f"no replica runs {job_id}")


async def one_round(server: LiveKitServer, replicas: list[ServiceProcess], n: int
                    ) -> tuple[float, float, int]:
    """(dispatch -> greeting heard, SIGKILL -> the next leg heard) in seconds, and which
    replica was killed."""
    loop = asyncio.get_running_loop()
    room, job_id = f"bench-fo-{n}", f"AJ_fo{n}"
    caller = RealCaller(server=server, room=room, identity=f"caller-{n}")
    await caller.join()
    try:
        raw, headers = signed_offer(server, job_id=job_id, room=room)
        sent = loop.time()
        answer = await replicas[n % len(replicas)].client.post(
            "/livekit/agent", content=raw, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"offer refused: {answer.status_code} {answer.text}")
        fresh = await caller.audio.wait_voiced_after(sent, within=30) - sent
        greeting = await caller.wait_message(
            "transcript_chunk", lambda d: d["is_final"] and d["text"] == GREETING, within=30)
        await caller.wait_message("agent_status", lambda d: d["status"] == "listening",
                                  after=caller.received.index(greeting), within=30)
        owner = await _owner(replicas, job_id)
        seen = len(caller.received)
        replicas[owner].signal(signal.SIGKILL)
        killed = loop.time()
        back = await caller.wait_message("agent_status",
                                         lambda d: d.get("message") == "resumed",
                                         after=seen, within=60)
        heard = await caller.audio.wait_voiced_after(back.at, within=30) - killed
        await replicas[owner].wait_exit(10)
        await replicas[owner].client.aclose()
        return fresh, heard, owner
    finally:
        await caller.leave()


async def main(rounds: int, lease: float) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("no redis-server (apt-get install redis-server)")
        return 2
    server = LiveKitServer(binary=server_binary() or Path("livekit-server"), workdir=work,
                           webhook_urls=["http://127.0.0.1:18080/livekit/webhook"])
    redis = RedisServer(binary=Path(redis_bin), workdir=work / "redis")
    server.start()
    redis.start()
    replicas = [_replica(server, redis, work, i, lease) for i in range(3)]
    fresh: list[float] = []
    takeover: list[float] = []
    try:
        for service in replicas:
            await service.start()
        for n in range(rounds):
            f, heard, owner = await one_round(server, replicas, n)
            fresh.append(f)
            takeover.append(heard)
            print(f"round {n + 1}: fresh dispatch -> voice {f:.2f} s; "
                  f"SIGKILL -> voice again {heard:.2f} s")
            replicas[owner] = _replica(server, redis, work, owner, lease)
            await replicas[owner].start()
    finally:
        await asyncio.gather(*(s.stop() for s in replicas), return_exceptions=True)
        redis.stop()
        server.stop()
    p50, worst = statistics.median(takeover), max(takeover)
    base = statistics.median(fresh)
    beyond = p50 - lease
    print(f"lease {lease:g} s, scan 0.25 s, {rounds} kills, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"SIGKILL -> agent's voice again: p50 {p50:.2f} s, max {worst:.2f} s; "
          f"fresh dispatch -> voice p50 {base:.2f} s")
    print(f"headline: kill to voice again p50 {p50:.2f} s (max {worst:.2f} s) with a "
          f"{lease:g} s lease; beyond the lease {beyond:.2f} s = {beyond / base:.2f}x a fresh "
          "dispatch's time to voice")
    return 0


if __name__ == "__main__":
    if not in_private_netns():
        script = ROOT / "scripts" / "netns-run"
        os.execv(str(script), [str(script), sys.executable, *sys.argv])
    logging.disable(logging.INFO)
    started = time.monotonic()
    args: list[Any] = sys.argv[1:]
    code = asyncio.run(main(int(args[0]) if args else 5, float(args[1]) if len(args) > 1
                            else 5.0))
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(code)
