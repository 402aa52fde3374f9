"""CPU and memory per listening participant on the in-memory room.

Each job is a JT_ROOM agent (``make_job_body`` with the listen-only conversation) in its own
room with several simulated users sending real-time 48 kHz speech-like audio (10 ms frames).
Three runs, each in a fresh process so memory is not shared between them:

- ``baseline``: the same rooms and users generating and pushing the same audio, no agent;
- ``ns_off`` / ``ns_on``: one agent per room, noise suppression off / on.

Per participant: CPU = (run CPU - baseline CPU) / participants / seconds; memory = (run RSS -
baseline RSS) / participants. Participants per core = 1 / CPU share. Targets: at least 50
listening participants per core and under 20 MB each.

    python bench/bench_listening.py [participants=20] [users=2] [seconds=5]
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livekit import rtc  # noqa: E402

from agents.config import AgentConfig  # noqa: E402
from agents.entry import ListeningConversation, make_job_body  # noqa: E402
from agents.job import JobSpec, RunningState  # noqa: E402
from agents.transport.memory import MemoryHub, SimulatedParticipant  # noqa: E402
from agents.transport.token import mint_agent_token  # noqa: E402

RATE = 48000
FRAME = RATE // 100
LOOP_SECONDS = 3.0


def speech_like(seed: int) -> list[bytes]:
    """3 s of voiced syllables (a few harmonics of a drifting pitch, 4 Hz envelope, pauses)
    over a little background noise, as 10 ms int16 frames."""
    rng = random.Random(seed)
    n = int(RATE * LOOP_SECONDS)
    out = bytearray()
    phase = 0.0
    for i in range(n):
        t = i / RATE
        pitch = 120 + 30 * math.sin(2 * math.pi * 0.7 * t + seed)
        phase += 2 * math.pi * pitch / RATE
        env = max(0.0, math.sin(2 * math.pi * 4 * t)) if (t % 1.5) < 1.1 else 0.0
        voice = sum(math.sin(k * phase) / k for k in (1, 2, 3, 5))
        sample = 6000 * env * voice + rng.gauss(0, 300)
        out += int(max(-32768, min(32767, sample))).to_bytes(2, "little", signed=True)
    return [bytes(out[j:j + FRAME * 2]) for j in range(0, len(out), FRAME * 2)]


class NullReporter:
    def state(self, state: RunningState, *, detail: str | None = None) -> None: ...
    def record(self, key: str, value: Any) -> None: ...


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def run_mode(mode: str, participants: int, users: int, seconds: float) -> dict[str, Any]:
    hub = MemoryHub()
    clips = [speech_like(s) for s in range(4)]
    sims: list[SimulatedParticipant] = []
    for p in range(participants):
        room = hub.room(f"bench-{p}")
        for u in range(users):
            sim = room.add_participant(f"user-{p}-{u}")
            sim.publish_audio()
            sims.append(sim)
    tasks: list[asyncio.Task[Any]] = []
    if mode != "baseline":
        config = AgentConfig.model_validate(
            {"room": {"allow_local_rooms": True, "noise_suppression": mode == "ns_on"}}
        )
        body = make_job_body(config, hub=hub, conversation_factory=ListeningConversation)
        for p in range(participants):
            identity = f"ai-agent-AJ_{p}"
            spec = JobSpec(
                job_id=f"AJ_{p}", dispatch_id="AD", job_type="JT_ROOM", room_name=f"bench-{p}",
                server_url="local://bench", agent_identity=identity, agent_name="AI",
                agent_metadata="", access_token=mint_agent_token(
                    api_key="k", api_secret="s" * 32, room=f"bench-{p}", identity=identity),
            )
            tasks.append(asyncio.create_task(body(spec, NullReporter()), name=f"bench.job.{p}"))
        async with asyncio.timeout(10):
            for p in range(participants):
                await hub.room(f"bench-{p}").wait_for_agents(1)

    async def drive(duration: float) -> int:
        """Push one 10 ms frame per user every 10 ms of wall time (catching up after lag)."""
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < duration:
            due = int(elapsed * 100) + 1
            while sent < due:
                for k, sim in enumerate(sims):
                    clip = clips[k % len(clips)]
                    data = clip[(sent + 37 * k) % len(clip)]
                    sim.push_audio(rtc.AudioFrame(data, RATE, 1, FRAME))
                sent += 1
            await asyncio.sleep(max(0.0, (sent / 100) - (time.monotonic() - start)))
        return sent

    await drive(1.0)  # warm-up: resamplers, noise suppressors, allocator
    cpu0, wall0 = time.process_time(), time.monotonic()
    frames = await drive(seconds)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    rss = rss_mb()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sim in sims:
        await sim.aclose()
    return {"mode": mode, "cpu_s": cpu, "wall_s": wall, "rss_mb": rss,
            "frames_per_user": frames, "participants": participants, "users": users}


def child(mode: str, participants: int, users: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--mode", mode, str(participants), str(users), str(seconds)],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--mode" in sys.argv:
        mode = sys.argv[sys.argv.index("--mode") + 1]
        args = args[1:]
        participants, users, seconds = int(args[0]), int(args[1]), float(args[2])
        import logging

        import structlog
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
        print(json.dumps(asyncio.run(run_mode(mode, participants, users, seconds))))
        return
    participants = int(args[0]) if len(args) > 0 else 20
    users = int(args[1]) if len(args) > 1 else 2
    seconds = float(args[2]) if len(args) > 2 else 5.0
    base = child("baseline", participants, users, seconds)
    print(f"participants={participants} users_per_room={users} seconds={seconds} "
          f"(48 kHz speech-like audio, real time)")
    print(f"baseline (audio generated and pushed, no agent): cpu {base['cpu_s']:.2f} s over "
          f"{base['wall_s']:.2f} s wall, rss {base['rss_mb']:.1f} MB")
    per_core: dict[str, float] = {}
    for mode in ("ns_off", "ns_on"):
        run = child(mode, participants, users, seconds)
        share = max(1e-9, (run["cpu_s"] - base["cpu_s"]) / participants / run["wall_s"])
        mb = (run["rss_mb"] - base["rss_mb"]) / participants
        per_core[mode] = 1.0 / share
        print(f"{mode}: cpu {run['cpu_s']:.2f} s ({run['cpu_s'] / base['cpu_s']:.2f}x baseline),"
              f" {share * 100:.2f}% of a core per participant -> {per_core[mode]:.0f} "
              f"participants/core; {mb:.2f} MB per participant (target < 20)")
    print(f"listening_participants_per_core_ns_on: {per_core['ns_on']:.0f} participants/core "
          f"(target 50)")


if __name__ == "__main__":
    main()
