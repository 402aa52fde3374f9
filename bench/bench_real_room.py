"""What a caller measures on a real LiveKit server, against the same calls in the in-memory room.

Inside a private network namespace (it re-runs itself through ``scripts/netns-run``): a real
``livekit-server``, ``external-agent serve`` with the embedded stack, real ``livekit`` SDK callers.

- join time per door: from the dispatch (the signed webhook POST, ``create_dispatch``, or the
  caller creating a room a LiveKit webhook rule matches) to the caller seeing the agent join;
- end of speech -> agent audio: from the end of the caller's spoken line (rendered offline) to
  the first audible agent frame at the caller;
- barge-in stop: from the caller starting to speak over the agent to the agent's last audible
  frame at the caller.

Baseline in the same run: the same caller code against the in-memory room (the service in
process), which has no encoding, SFU or jitter buffer; the ratio says what the room costs.

Run: ``.venv/bin/python bench/bench_real_room.py [rounds]`` (needs the livekit-server binary:
``make livekit-server``).
"""

from __future__ import annotations

import asyncio
import logging
import os
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
    in_private_netns,
    render_speech,
    server_binary,
)
from percentiles import nearest_rank  # noqa: E402
from stage import GREETING, MemoryStage, RealStage, Stage, real_service  # noqa: E402

LINES = ["Hi, I need some help with an order.", "My name is Alice Johnson.",
         "The package arrived damaged."]
BARGE = "Sorry to interrupt, my name is Dave Miller and I need help."


def _agent_final(data: dict[str, Any]) -> bool:
    return bool(data["is_final"]) and str(data["participant_id"]).startswith("ai-agent-")


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    p95 = nearest_rank(values, 0.95)
    return f"p50 {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms " \
        f"(n={len(values)})"


async def _agent_joined(caller: RealCaller) -> float:
    loop = asyncio.get_running_loop()
    joined: asyncio.Future[float] = loop.create_future()

    def on_join(p: Any) -> None:
        if p.identity.startswith("ai-agent-") and not joined.done():
            joined.set_result(loop.time())

    for p in caller.room.remote_participants.values():
        on_join(p)
    caller.room.on("participant_connected", on_join)
    return await asyncio.wait_for(joined, 20)


async def conversation(stage: Stage, room: str, *, job_id: str) -> list[float]:
    """Three spoken turns: end of each line -> first agent audio heard."""
    caller = await stage.caller(room, "alice")
    await stage.dispatch(job_id=job_id, room=room)
    await caller.wait_message("transcript_chunk", _agent_final)
    greeting = await caller.audio.wait_voiced_after(0, within=20)
    await caller.audio.wait_silent_after(greeting, silence_s=0.6, within=20)
    latencies = []
    for line in LINES:
        pcm = await render_speech(line)
        seen = len(caller.received)
        ended = await caller.say(pcm)
        heard = await caller.audio.wait_voiced_after(ended, within=20)
        latencies.append(heard - ended)
        await caller.wait_message("transcript_chunk", _agent_final, after=seen)
        await caller.audio.wait_silent_after(heard, silence_s=0.6, within=20)
    await caller.leave()
    await stage.wait_job(job_id, within=30)
    return latencies


async def barge_in(stage: Stage, room: str, *, job_id: str) -> float:
    """The caller speaks over the greeting: start of speech -> agent silent."""
    speech = await render_speech(BARGE)
    caller = await stage.caller(room, "dave")
    await stage.dispatch(job_id=job_id, room=room)
    heard = await caller.audio.wait_voiced_after(0, within=20)
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    speaking = asyncio.create_task(caller.say(speech))
    stopped = await caller.audio.wait_silent_after(started, silence_s=0.4, within=20)
    await speaking
    await caller.leave()
    await stage.wait_job(job_id, within=30)
    del heard
    return max(0.0, stopped - started)


async def idle(stage: RealStage) -> None:
    """Wait until the service runs no job (each join is measured on an idle service)."""
    async with asyncio.timeout(30):
        while (await stage.client.get("/health")).json()["active_jobs"]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def joins(server: LiveKitServer, stage: RealStage, rounds: int) -> dict[str, list[float]]:
    from livekit import api

    out: dict[str, list[float]] = {"webhook": [], "native": [], "livekit_webhook": []}
    loop = asyncio.get_running_loop()
    lk = server.api()
    try:
        for i in range(rounds):
            caller = await stage.caller(f"join-w{i}", "caller", microphone=False)
            t0 = loop.time()
            r = await stage.dispatch(job_id=f"AJ_join_w{i}", room=f"join-w{i}")
            if not r.json().get("accepted"):
                raise RuntimeError(f"webhook refused: {r.status_code} {r.text}")
            out["webhook"].append(await _agent_joined(caller) - t0)  # type: ignore[arg-type]
            await caller.leave()
            await idle(stage)

            caller = await stage.caller(f"join-n{i}", "caller", microphone=False)
            t0 = loop.time()
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name="external-agent", room=f"join-n{i}"))
            out["native"].append(await _agent_joined(caller) - t0)  # type: ignore[arg-type]
            await caller.leave()
            await idle(stage)

            t0 = loop.time()
            caller = await stage.caller(f"hook-join{i}", "caller", microphone=False)
            out["livekit_webhook"].append(
                await _agent_joined(caller) - t0)  # type: ignore[arg-type]
            await caller.leave()
            await idle(stage)
    finally:
        await lk.aclose()
    return out


async def main(rounds: int) -> int:
    import httpx
    from stage import ADMIN, SECRET, service_config

    from agents.entry import make_job_body
    from agents.transport.memory import MemoryHub
    from app.main import create_app
    from app.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-real-room-"))
    server = LiveKitServer(binary=server_binary() or Path("livekit-server"), workdir=work,
                           webhook_urls=["http://127.0.0.1:18080/livekit/webhook"])
    server.start()
    service = real_service(server, work)
    try:
        await service.start()
        real = RealStage(server=server, service=service)
        join = await joins(server, real, rounds)
        real_turns: list[float] = []
        real_barge: list[float] = []
        for i in range(rounds):
            real_turns += await conversation(real, f"talk-{i}", job_id=f"AJ_talk{i}")
            real_barge.append(await barge_in(real, f"barge-{i}", job_id=f"AJ_barge{i}"))
        await real.aclose()
    finally:
        await service.stop()
        server.stop()

    hub = MemoryHub()
    settings = Settings.model_validate({
        **service_config(artifacts=work / "mem-jobs"), "dev_mode": True, "log_level": "warning",
        "webhook_secrets": [SECRET], "admin_token": ADMIN, "worker": {"enabled": False},
        "livekit_api_key": "devkey", "livekit_api_secret": "devsecret-devsecret-devsecret-0123",
    })
    app = create_app(settings, job_body=make_job_body(settings.agent, hub=hub))
    mem_turns: list[float] = []
    mem_barge: list[float] = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=15,
    ) as client:
        mem = MemoryStage(hub=hub, client=client)
        for i in range(rounds):
            mem_turns += await conversation(mem, f"talk-{i}", job_id=f"AJ_mtalk{i}")
            mem_barge.append(await barge_in(mem, f"barge-{i}", job_id=f"AJ_mbarge{i}"))
        await mem.aclose()

    print(f"greeting: {GREETING!r}; {rounds} rounds; livekit-server {server.binary}")
    for door, values in join.items():
        print(f"join, {door:16s} {_ms(values)}")
    print(f"end of speech -> agent audio at the caller: real {_ms(real_turns)}; "
          f"in-memory {_ms(mem_turns)}")
    print(f"barge-in, caller starts speaking -> agent silent: real {_ms(real_barge)}; "
          f"in-memory {_ms(mem_barge)}")
    ratio = statistics.median(real_turns) / statistics.median(mem_turns)
    print(f"headline: end of speech -> agent audio p50 {statistics.median(real_turns)*1000:.0f} "
          f"ms on the real server, {ratio:.2f}x the in-memory room")
    return 0


if __name__ == "__main__":
    if not in_private_netns():
        script = ROOT / "scripts" / "netns-run"
        os.execv(str(script), [str(script), sys.executable, *sys.argv])
    logging.disable(logging.INFO)
    os.environ.setdefault("EXTERNAL_AGENT_LOG_LEVEL", "warning")
    started = time.monotonic()
    code = asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(code)
