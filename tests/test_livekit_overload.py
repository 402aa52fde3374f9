"""Overload on the real server: twice the load the replica can serve, and nobody starves.

Runs in the ``livekit`` tier only (``make test-livekit``). Callers publish speech in real time in
``ROOMS`` rooms at once, every room dispatched natively in one burst. The service runs
``max_jobs: auto`` with the default load limits, in a cgroup with a CPU quota (as a container's
CPU limit). What a listening job costs depends on the machine (about 0.1 core on one machine,
0.04-0.08 on a faster one for a caller who never pauses), so the test first lets the service
learn it on one room, then resizes the quota in place (as Kubernetes resizes a pod) so that
``SUSTAINABLE`` jobs fit: ``ROOMS`` is then at least twice the sustainable load on any machine,
and the overload is real (the process cannot get more CPU), yet small enough for 2 shared cores
and a few callers. Before the burst the learning room's job has ended and the replica was idle:
the jobs that follow must hear their callers (a replica once went deaf there,
docs/livekit.md#deaf-jobs). Its jobs listen as in ``bench/bench_room_density.py``: noise
suppression, Silero VAD and turns on the caller, each turn's audio to speech recognition on a
loopback OpenAI-compatible endpoint, a final transcript published to the room.

What must hold:
- every job the replica admitted gets the final transcript of each utterance within
  ``FINAL_WITHIN`` of the end of the utterance (the caller's clock: when the last sample went
  out, to when the final arrived);
- the excess is not admitted: the native offers are deferred (``GET /jobs``, metrics) and a job
  offered through the webhook door is refused with 503 and ``Retry-After``;
- no room starves: each caller, once served, speaks ``UTTERANCES`` times and hangs up, slots
  free, and the deferred rooms are dispatched again until every room was served;
- one WebRTC runtime (the same audio pump) serves every job, the idle moment included; every
  job released its room's native objects when it left, and no job reported a microphone whose
  audio arrived undecoded (``audio_not_decoded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cpu_limit import cpu_limited, set_limit
from listening import listening_agent
from livekit_env import LiveKitServer, RealCaller, ServiceProcess, render_speech
from openai_server import running_server
from stage import ADMIN, AGENT_NAME, RealStage, real_service
from test_livekit_capacity import agent_in_room, metric, wait_registered

from agents.transport.decode_watch import audio_pumps

pytestmark = [pytest.mark.livekit, pytest.mark.timeout(240)]

ROOMS = 6
CPU_LIMIT = 0.25
"""Cores the service may use while it learns what a job costs."""
SUSTAINABLE = 1.5
"""Then the quota is set so that this many learning jobs fit within the default
``load_limits.max_cpu`` (0.7 of the quota). The learning caller speaks without pauses; the
burst's callers pause between sentences, and the service measures their jobs at up to half the
cost: at 2.5 its capacity rose to 4 in one run of three (6 rooms no longer twice that). At 1.5 it
came out at 1 (2 at times) in four runs."""
MIN_LIMIT = 0.05
UTTERANCES = 2
FINAL_WITHIN = 1.0
SENTENCE = "Please book me an appointment for Tuesday."


@dataclass
class Room:
    caller: RealCaller
    agent: str | None = None
    latencies: list[float] = field(default_factory=list)
    missed: int = 0


async def quota_seen(service: ServiceProcess, cores: float) -> None:
    """Until the service has read its new quota (it reads it again every 2 s)."""
    async with asyncio.timeout(10):
        while abs((await jobs_view(service))["load"]["cores"] - cores) > 2e-3:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # another process: nothing to await but its answers


async def final_after(caller: RealCaller, t: float, *, within: float) -> float | None:
    """Loop time of the first final transcript of ``caller``'s speech arriving at or after
    ``t`` (None if none within ``within``)."""
    with contextlib.suppress(TimeoutError):
        m = await caller.wait_message(
            "transcript_chunk",
            lambda d: isinstance(d, dict) and bool(d.get("is_final"))
            and d.get("participant_id") == caller.identity,
            within=within, after=next(
                (i for i, m in enumerate(caller.received) if m.at >= t), len(caller.received)),
        )
        return m.at
    return None


async def jobs_view(service: ServiceProcess) -> dict[str, Any]:
    view: dict[str, Any] = (await service.client.get(
        "/jobs", headers={"authorization": f"Bearer {ADMIN}"})).json()
    return view


async def learned_job_cost(service: ServiceProcess, server: LiveKitServer, lk: Any,
                           pcm: Any) -> float:
    """Cores one listening job costs, as the service itself measured it (``max_jobs: auto``)
    on one room whose caller keeps speaking; the room is left and its job ended on return."""
    from livekit import api

    caller = RealCaller(server=server, room="overload-calibration",
                        identity="caller-overload-calibration")
    try:
        await caller.join()
        await caller.start_microphone()
        await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
            agent_name=AGENT_NAME, room=caller.room_name))
        await agent_in_room(caller, within=30)
        await asyncio.sleep(1.5)  # the agent subscribes to the microphone
        learned = 0
        async with asyncio.timeout(60):
            while learned < 2:  # the first figure, then one more utterance's worth
                await caller.say(pcm)
                load = (await jobs_view(service))["load"]
                if load["job_cost_cpu"]:
                    learned += 1
        cost = float(load["job_cost_cpu"]) * float(load["cores"])
    finally:
        await caller.leave()
    await no_active_job(service)
    return cost


async def no_active_job(service: ServiceProcess) -> None:
    """Until the service runs no job (its last jobs have left their rooms)."""
    async with asyncio.timeout(30):
        while (await jobs_view(service))["active_jobs"]:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.2)  # nothing to await but its answers


async def test_twice_the_sustainable_load_serves_every_admitted_job_in_time(
    live_server: LiveKitServer, tmp_path: Path
) -> None:
    from livekit import api

    pcm = await render_speech(SENTENCE)
    async with running_server() as stt:
        stt.transcript = "please book me an appointment"
        service = real_service(
            live_server, tmp_path, max_jobs="auto",
            agent=listening_agent(stt_url=stt.base_url, artifacts=tmp_path / "jobs"),
        )
        rooms = [Room(RealCaller(server=live_server, room=f"overload-{i}",
                                 identity=f"caller-overload-{i}")) for i in range(ROOMS)]
        lk = live_server.api()
        watcher: asyncio.Task[None] | None = None
        limit = contextlib.ExitStack()
        try:
            await service.start()
            await wait_registered(service)
            assert service.pid is not None
            group = limit.enter_context(
                cpu_limited(service.pid, CPU_LIMIT, name="overload-service"))
            await quota_seen(service, CPU_LIMIT)
            job_cost = await learned_job_cost(service, live_server, lk, pcm)
            # Idle now, and the WebRTC runtime the first room built stays: torn down and built
            # again under the next rooms' connects, it could lose the process's audio pump, and
            # every later job was deaf (docs/livekit.md#deaf-jobs).
            pumps = audio_pumps(service.pid)
            assert len(pumps) == 1, pumps
            quota = min(CPU_LIMIT, max(MIN_LIMIT, SUSTAINABLE * job_cost / 0.7))
            set_limit(group, quota)
            await quota_seen(service, quota)
            capacity = (await jobs_view(service))["max_jobs"]
            print(f"a listening job costs {job_cost:.4f} core here: quota {quota:.3f} core, "
                  f"capacity {capacity}")
            # The premise: the burst is at least twice what the replica can sustain.
            assert ROOMS >= 2 * capacity, (job_cost, quota, capacity)
            await asyncio.gather(*(r.caller.join() for r in rooms))
            for r in rooms:
                await r.caller.start_microphone()

            peak_active = deferred_seen = 0
            refused: list[Any] = []
            capacities: list[int] = []
            loads: list[dict[str, Any]] = []

            async def watch() -> None:
                nonlocal peak_active, deferred_seen
                while True:
                    view = await jobs_view(service)
                    peak_active = max(peak_active, view["active_jobs"])
                    deferred_seen = max(deferred_seen, view["deferred"]["waiting"])
                    capacities.append(view["max_jobs"])
                    loads.append(view["load"])
                    if not refused and view["active_jobs"] >= view["max_jobs"] >= 1:
                        # Full: a job through the webhook door is refused, with Retry-After.
                        stage = RealStage(server=live_server, service=service)
                        refused.append(await stage.dispatch(job_id="overload-hook",
                                                            room="overload-hook"))
                    await asyncio.sleep(0.25)  # each look costs the service CPU too

            watcher = asyncio.create_task(watch(), name="test.watch-overload")
            # The whole burst at once: the server offers each room's job to our only worker.
            await asyncio.gather(*(lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=r.caller.room_name))
                for r in rooms))

            async def serve(room: Room) -> None:
                # Wait for an agent (now or after a deferral), speak, check each final, hang up:
                # the job ends and its slot goes to a room still waiting.
                with contextlib.suppress(TimeoutError):
                    room.agent = await agent_in_room(room.caller, within=150)
                if room.agent is None:
                    return
                await asyncio.sleep(1.5)  # the agent subscribes to the microphone
                for _ in range(UTTERANCES):
                    end = await room.caller.say(pcm)
                    at = await final_after(room.caller, end, within=5.0)
                    if at is None:
                        room.missed += 1
                    else:
                        room.latencies.append(at - end)
                    await asyncio.sleep(max(0.0, 1.0 - (asyncio.get_running_loop().time() - end)))
                await room.caller.leave()

            await asyncio.gather(*(serve(r) for r in rooms))

            report = "\n".join(
                f"{r.caller.room_name}: agent {r.agent}, finals after "
                f"{[round(x, 3) for x in r.latencies]} s, missed {r.missed}" for r in rooms)
            log = service.tail(120)
            print(f"{report}\ncapacity (max_jobs: auto) seen {sorted(set(capacities))}, "
                  f"peak active {peak_active}, deferred at most {deferred_seen}; "
                  f"last load {loads[-1] if loads else None}")
            # No room starved: every one got its agent (one job each).
            assert all(r.agent for r in rooms), f"{report}\n{log}"
            assert len({r.agent for r in rooms}) == ROOMS, report
            # Every admitted job heard every utterance and answered in time.
            assert all(r.missed == 0 for r in rooms), f"{report}\n{log}"
            latencies = [x for r in rooms for x in r.latencies]
            assert max(latencies) <= FINAL_WITHIN, (
                f"{report}\np50 {statistics.median(latencies):.3f} s\n{log}")
            # The excess waited instead of being admitted.
            assert peak_active < ROOMS, (peak_active, capacities)
            assert peak_active <= max(capacities), (peak_active, capacities)
            assert ROOMS >= 2 * statistics.median(capacities), capacities  # the premise
            assert deferred_seen >= 1
            assert refused and refused[0].status_code == 503, refused
            assert int(refused[0].headers["retry-after"]) >= 1

            await no_active_job(service)
            # Listening jobs were announced by their lk.agent.state and published no track.
            full_log = service.log_path.read_text(errors="replace")
            assert full_log.count('"agent_announced"') == ROOMS + 1, log
            assert '"audio_published"' not in full_log and "agent_state_failed" not in full_log
            # One runtime served every job; none went deaf after the idle moment; every job
            # (the learning one too) gave its room's native objects back as it left.
            assert audio_pumps(service.pid) == pumps
            assert '"audio_not_decoded"' not in full_log, log
            released = [line for line in full_log.splitlines() if '"room_released"' in line]
            assert len(released) == ROOMS + 1 and all(
                '"handles": 0' not in line for line in released), released

            metrics = (await service.client.get("/metrics")).text
            name = "external_agent_deferred_dispatch_events"
            deferred = metric(metrics, name, "deferred")
            assert deferred >= 1
            assert metric(metrics, name, "reissued") == deferred
            assert metric(metrics, name, "expired") == metric(metrics, name, "failed") == 0
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            for r in rooms:
                await r.caller.leave()
            await lk.aclose()
            await service.stop()
            limit.close()
