"""Listening density on a real livekit-server: our service against livekit-agents, same run.

N rooms, a real caller in each (``livekit.rtc``, publishing speech rendered offline with the
embedded voice at 48 kHz in real time: a sentence, 1.2 s of silence, again), jobs through native
dispatch (``CreateDispatch`` for all N rooms at once), all inside a private network namespace
(``scripts/netns-run``; the script re-runs itself there). The load generator shares the 2 cores.

- ``ours``: ``external-agent serve`` (one process), listening only: noise suppression, Silero VAD
  and turn detection on every caller, each turn's audio to speech recognition on a loopback
  OpenAI-compatible fake (``tests/openai_server.py``), so listening is what is measured; every
  turn ends with a final transcript published to the room.
- ``livekit-agents``: the reference worker (PyPI ``livekit-agents`` 1.8.9 with
  ``livekit-plugins-silero``, installed by this script into ``.cache/bench-lk-agents``, a
  bench-only venv) running its Silero VAD stream on every caller and publishing one data message
  per end of speech (``bench/lk_agents_listener.py``). VAD only: no noise suppression, no STT. Its
  default process per job is kept; its load function is pinned to 0 so the server offers it
  every job (its CPU-based load on this shared machine would refuse them all).

Per system: CPU (process tree, /proc) and PSS over ``--seconds`` with the N jobs, less the same
over an idle spell before the dispatch, divided by N; joins (agents in rooms), dispatch-to-agent
in the room (from the dispatch call to the caller seeing the agent participant) and turns
ended (finals) per room over the window: proof each job kept up.

    python bench/bench_room_density.py [--rooms 8] [--seconds 20] [--systems ours,livekit-agents]
        [--systems ours-unrouted,ours]   # the SDK's audio event delivery against our routing
        [--systems ours-sdk-logs,ours]   # the SDK's native log records forwarded, or not
        [--systems ours-single-pc,ours]  # one peer connection per job (the SDK's default) or two
        [--py-spy FILE]   # also profile our service over the window (pip install py-spy)
        [--breakdown]     # ours logs at info: where dispatch-to-agent time goes, per stage
        [--joins-only]    # silent callers, no density window: the dispatch burst alone
        [--door webhook]  # ours only: the burst through our signed webhook instead of native
                          # dispatch (no server-side offer stage: see docs/livekit.md)

Last line: ``bench_room_density: <ratio> x livekit-agents cores per listening job`` (theirs /
ours: above 1 means ours is cheaper).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from listening import listening_agent  # noqa: E402
from livekit_env import (  # noqa: E402
    LiveKitServer,
    RealCaller,
    in_private_netns,
    render_speech,
    server_binary,
)
from openai_server import running_server  # noqa: E402
from stage import real_service, signed_offer  # noqa: E402

LKA_VENV = ROOT / ".cache" / "bench-lk-agents"
LKA_PACKAGES = ["livekit-agents==1.8.9", "livekit-plugins-silero==1.8.9"]
LKA_AGENT = "bench-lk-agents"
SENTENCE = "I would like to book an appointment for next Tuesday morning, please."
TICKS = os.sysconf("SC_CLK_TCK")


# -- process accounting -----------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_pids(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def _stat_seconds(stat: Path) -> float:
    """utime + stime of a ``/proc/.../stat`` file (a process or a thread), in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _stat_seconds(Path(f"/proc/{pid}/stat"))
    return total


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total / 1024


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s threads, summed by thread name (``comm``)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            name = (task / "comm").read_text().strip()
            out[name] = out.get(name, 0.0) + _stat_seconds(task / "stat")
    return out


class ThreadCpu:
    """CPU seconds of ``pid``'s threads by name since this was made."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = thread_cpu(pid)

    def seconds(self) -> dict[str, float]:
        return {name: cpu - self.start.get(name, 0.0)
                for name, cpu in thread_cpu(self.pid).items()}


def busiest(threads: dict[str, float], n: int, scale: float = 1.0, digits: int = 2) -> str:
    """The ``n`` busiest threads, ``name cpu*scale``."""
    top = sorted(threads.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {cpu * scale:.{digits}f}" for name, cpu in top if cpu > 0)


class TreeCpu:
    """CPU seconds of ``root``'s process tree since this was made (children that end meanwhile
    are missed; the trees measured here keep their processes)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.pids = tree_pids(root)
        self.start = cpu_seconds(self.pids)
        self.t0 = time.monotonic()

    def seconds(self) -> float:
        return cpu_seconds(sorted(set(self.pids) | set(tree_pids(self.root)))) - self.start


async def cpu_over(root: int, seconds: float) -> float:
    """Cores used by ``root``'s process tree over ``seconds``."""
    meter = TreeCpu(root)
    await asyncio.sleep(seconds)
    return meter.seconds() / (time.monotonic() - meter.t0)


# -- the systems under test -------------------------------------------------------------------

class System:
    name: str
    pid: int
    agent_name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Ours(System):
    name = "ours"
    agent_name = "external-agent"

    def __init__(self, server: LiveKitServer, workdir: Path, stt_url: str, rooms: int, *,
                 routed: bool = True, sdk_frame_ms: int = 30, log_level: str = "warning",
                 native_logs: bool = False, single_pc: bool = False) -> None:
        agent = listening_agent(stt_url=stt_url, artifacts=workdir / "jobs")
        agent["room"]["route_audio_events"] = routed
        agent["room"]["sdk_frame_ms"] = sdk_frame_ms
        agent["room"]["native_log_capture"] = native_logs
        agent["room"]["single_peer_connection"] = single_pc
        if single_pc:
            self.name = "ours-single-pc"
        elif native_logs:
            self.name = "ours-sdk-logs"
        elif not routed:
            self.name = "ours-unrouted"
        elif sdk_frame_ms != 30:
            self.name = f"ours-{sdk_frame_ms}ms"
        self.service = real_service(
            server, workdir, max_jobs=rooms + 2, log_level=log_level, agent=agent)

    async def start(self) -> None:
        await self.service.start()
        assert self.service.pid is not None
        self.pid = self.service.pid
        await asyncio.sleep(2.0)  # registered with the server (the worker connects at start-up)

    async def stop(self) -> None:
        await self.service.stop()


class LiveKitAgents(System):
    name = "livekit-agents"
    agent_name = LKA_AGENT

    def __init__(self, server: LiveKitServer, workdir: Path, *, idle_processes: int = 0) -> None:
        self.server = server
        self.log_path = workdir / "lk-agents.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.idle_processes = idle_processes
        """Job processes it keeps warm (0: its own default, one a core)."""

    async def start(self) -> None:
        if not (LKA_VENV / "bin" / "python").exists():
            raise SystemExit(f"no livekit-agents baseline in {LKA_VENV}: run this bench outside "
                             "a network namespace once (it installs it from PyPI)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
        env.update(LIVEKIT_URL=self.server.url, LIVEKIT_API_KEY=self.server.api_key,
                   LIVEKIT_API_SECRET=self.server.api_secret, BENCH_AGENT_NAME=LKA_AGENT)
        if self.idle_processes:
            env["BENCH_IDLE_PROCESSES"] = str(self.idle_processes)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [str(LKA_VENV / "bin" / "python"), str(ROOT / "bench" / "lk_agents_listener.py"),
                 "start"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                stdin=subprocess.DEVNULL)
        self.pid = self._proc.pid
        async with asyncio.timeout(60):
            while "registered worker" not in self.log_path.read_text(errors="replace"):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"livekit-agents exited: {self.tail()}")
                await asyncio.sleep(0.2)
        # its idle job processes warm up (each loads Silero: about a second on these cores)
        await asyncio.sleep(2.0 + 1.0 * self.idle_processes)

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    async def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        for _ in range(200):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        for pid in tree_pids(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        proc.wait(5)


def ensure_lk_agents() -> None:
    """The baseline's own venv, from PyPI (once; kept in the git-ignored .cache/)."""
    python = LKA_VENV / "bin" / "python"
    if python.exists() and subprocess.run(
            [str(python), "-c", "import livekit.agents, livekit.plugins.silero"],
            capture_output=True).returncode == 0:
        return
    print(f"installing {' '.join(LKA_PACKAGES)} into {LKA_VENV} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LKA_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *LKA_PACKAGES], check=True)


# -- one run ----------------------------------------------------------------------------------

@dataclass
class Result:
    system: str
    rooms: int
    idle_cpu: float = 0.0
    idle_mb: float = 0.0
    load_cpu: float = 0.0
    load_mb: float = 0.0
    joins: int = 0
    join_ms: list[float] = field(default_factory=list)
    finals: list[int] = field(default_factory=list)
    spoken: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)
    """Join stages (ms from the dispatches), from the service's info log (``--breakdown``)."""
    burst_cpu_s: float = 0.0
    """CPU seconds of the system's process tree from the dispatches to the last join."""
    burst_wall_s: float = 0.0
    burst_server_cpu_s: float = 0.0
    burst_callers_cpu_s: float = 0.0
    """The same for livekit-server and for this process (the callers): where the 2 cores went."""
    burst_threads: dict[str, float] = field(default_factory=dict)
    """The system's main process over the burst, CPU seconds by thread name."""
    load_threads: dict[str, float] = field(default_factory=dict)
    """The same over the listening window."""
    after_cpu: float = 0.0
    after_mb: float = 0.0
    """Idle again once the callers left and the jobs ended: what the jobs left behind."""

    # Per job that ran (the rooms whose agent joined): a system that took fewer jobs would
    # otherwise look cheaper per job than it is.
    @property
    def core_per_job(self) -> float:
        return max(0.0, self.load_cpu - self.idle_cpu) / self.joins if self.joins else 0.0

    @property
    def mb_per_job(self) -> float:
        return max(0.0, self.load_mb - self.idle_mb) / self.joins if self.joins else 0.0


async def agent_joined(caller: RealCaller, since: float) -> float:
    from livekit import rtc

    while True:
        for p in caller.room.remote_participants.values():
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return (time.monotonic() - since) * 1000
        await asyncio.sleep(0.01)


def finals_of(caller: RealCaller, after: float) -> int:
    """Turns of this caller that ended (final transcripts) since loop time ``after``."""
    return sum(1 for m in caller.messages("transcript_chunk")
               if isinstance(m.data, dict) and m.data.get("is_final")
               and m.data.get("participant_id") == caller.identity and m.at >= after)


async def talk(caller: RealCaller, pcm: Any, counter: list[int]) -> None:
    while True:
        await caller.say(pcm)
        counter[0] += 1
        await asyncio.sleep(1.2)


async def dispatch_all(system: System, server: LiveKitServer, lk: Any,
                       callers: list[RealCaller], *, door: str) -> None:
    """One job per caller's room, all at once: ``CreateDispatch`` (native: the server offers each
    job to a worker) or a signed notification to our webhook (``door == "webhook"``)."""
    from livekit import api

    if door == "webhook":
        if not isinstance(system, Ours):
            raise SystemExit(f"--door webhook: {system.name} has no webhook door")
        client = system.service.client

        async def notify(room: str) -> None:
            raw, headers = signed_offer(server, job_id=f"AJ_{room}", room=room)
            r = await client.post("/livekit/agent", content=raw, headers=headers)
            if r.status_code != 200 or not r.json().get("accepted"):
                raise RuntimeError(f"webhook refused {room}: {r.status_code} {r.text}")

        await asyncio.gather(*(notify(c.room_name) for c in callers))
        return
    await asyncio.gather(*(lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
        agent_name=system.agent_name, room=c.room_name)) for c in callers))


async def settled(*, below: float = 0.2, within: float = 10.0) -> None:
    """Wait until this process (the callers) uses less than ``below`` of a core over half a
    second: a caller's SDK keeps working for 1-2 s after its connect returns (a core's worth for
    20 callers), and a burst measured meanwhile would wait for the load generator (at most
    ``within`` seconds)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(0.5)
        if (time.process_time() - cpu) / (time.monotonic() - wall) < below:
            return


async def measure(system: System, server: LiveKitServer, *, rooms: int, seconds: float,
                  idle_seconds: float, tag: str, profile: Path | None = None,
                  joins_only: bool = False, door: str = "native") -> Result:
    result = Result(system=system.name, rooms=rooms)
    pcm = await render_speech(SENTENCE)
    await system.start()
    callers: list[RealCaller] = []
    talkers: list[asyncio.Task[None]] = []
    lk = server.api()
    try:
        result.idle_cpu = await cpu_over(system.pid, idle_seconds)
        result.idle_mb = pss_mb(tree_pids(system.pid))
        # With --joins-only the callers do not decode the agents' audio: on these shared cores
        # the load generator's own work would otherwise be what the later joins wait for.
        callers = [RealCaller(server=server, room=f"{tag}-{i}", identity=f"caller-{tag}-{i}",
                              listen=not joins_only) for i in range(rooms)]
        await asyncio.gather(*(c.join() for c in callers))
        await settled()
        spoken = [0]
        if not joins_only:  # with --joins-only the callers stay silent: the burst alone
            for c in callers:
                await c.start_microphone()
            talkers = [asyncio.create_task(talk(c, pcm, spoken), name=f"bench.talk.{c.identity}")
                       for c in callers]
        spy = None
        if joins_only and profile is not None:  # the burst itself, not paused by the sampler
            spy = start_py_spy(system.pid, 4, profile, native=False, nonblocking=True)
            await asyncio.sleep(0.5)
        burst = TreeCpu(system.pid)
        burst_server = TreeCpu(server.pid) if server.pid is not None else None
        burst_callers = time.process_time()
        # one process: livekit-agents runs a process per job
        burst_threads = ThreadCpu(system.pid) if isinstance(system, Ours) else None
        t0, t0_wall = time.monotonic(), time.time()
        await dispatch_all(system, server, lk, callers, door=door)
        joins = await asyncio.gather(*(asyncio.wait_for(agent_joined(c, t0), 30)
                                       for c in callers), return_exceptions=True)
        result.burst_cpu_s = burst.seconds()
        result.burst_wall_s = time.monotonic() - t0
        result.burst_server_cpu_s = burst_server.seconds() if burst_server is not None else 0.0
        result.burst_callers_cpu_s = time.process_time() - burst_callers
        if burst_threads is not None:
            result.burst_threads = burst_threads.seconds()
        result.join_ms = [j for j in joins if isinstance(j, float)]
        result.joins = len(result.join_ms)
        if isinstance(system, Ours):
            await asyncio.sleep(1.0)  # the last jobs' "running" lines
            result.stages = join_stages(system.service.log_path, t0_wall)
        if joins_only:
            if spy is not None:
                await asyncio.to_thread(spy.wait, 30)
            return result
        await asyncio.sleep(3.0)  # every job listening
        window = asyncio.get_running_loop().time()
        spoken[0] = 0
        load_threads = ThreadCpu(system.pid) if isinstance(system, Ours) else None
        result.load_cpu = await cpu_over(system.pid, seconds)
        if load_threads is not None:
            result.load_threads = load_threads.seconds()
        result.load_mb = pss_mb(tree_pids(system.pid))
        await asyncio.sleep(1.5)  # the last turn's final
        result.finals = [finals_of(c, window) for c in callers]
        result.spoken = spoken[0]
        if profile is not None and not joins_only:  # after the window: sampling pauses it
            spy = start_py_spy(system.pid, seconds, profile)
            await asyncio.to_thread(spy.wait, seconds + 30)
        for t in talkers:
            t.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
        talkers = []
        for c in callers:
            await c.leave()
        callers = []
        await asyncio.sleep(AFTER_JOBS_S)  # every job has seen its caller leave and ended
        result.after_cpu = await cpu_over(system.pid, idle_seconds)
        result.after_mb = pss_mb(tree_pids(system.pid))
    finally:
        for t in talkers:
            t.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
        for c in callers:
            await c.leave()
        await lk.aclose()
        await system.stop()
    return result


AFTER_JOBS_S = 8.0
"""Seconds from the callers leaving to measuring idle again (the jobs end as their caller goes;
livekit-agents' job processes, in its pool, may take a moment)."""


JOIN_STAGES = {
    # service log event -> stage name; the first of each per job (SDK lines carry no job id)
    "dispatch_availability": "offer received",
    "job_accepted": "job accepted",
    "dispatch_job_started": "assignment handled",
    "room_connected": "room connected",
    "agent_announced": "lk.agent.state set",
    "audio_published": "agent track published",
    "participant_running": "job running",
}


def join_stages(log_path: Path, t0_wall: float) -> dict[str, list[float]]:
    """Per stage, ms from the dispatches to each job reaching it (info log only)."""
    import datetime
    import json

    firsts: dict[str, dict[str, float]] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                at = datetime.datetime.fromisoformat(entry["timestamp"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if at < t0_wall:
                continue
            event = str(entry.get("event", ""))
            stage = JOIN_STAGES.get(event)
            job = entry.get("job_id")
            if stage and job:
                firsts.setdefault(stage, {}).setdefault(str(job), (at - t0_wall) * 1000)
    stages = {name: sorted(firsts.get(name, {}).values()) for name in JOIN_STAGES.values()}
    return stages


def start_py_spy(pid: int, seconds: float, out: Path, *, native: bool = True,
                 nonblocking: bool = False) -> subprocess.Popen[bytes]:
    """py-spy (``pip install py-spy``) sampling ``pid`` (after the measured window: it pauses
    the process per sample): collapsed stacks to ``out`` (flamegraph input), native frames
    included (the SDK, onnxruntime)."""
    local = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(local) if local.exists() else "py-spy", "record", "--pid", str(pid),
         "--duration", str(int(seconds)), "--rate", "100",
         *(["--native"] if native else []), *(["--nonblocking"] if nonblocking else []),
         "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(collapsed: Path, n: int = 25) -> list[tuple[str, float]]:
    """Self time by frame (share of samples), from py-spy's collapsed stacks."""
    counts: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", leaf)
        if m:
            leaf = f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"
        counts[leaf] = counts.get(leaf, 0) + int(count)
        total += int(count)
    return [(k, v / total) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


def report(r: Result, seconds: float) -> None:
    p50 = statistics.median(r.join_ms) if r.join_ms else float("nan")
    worst = max(r.join_ms) if r.join_ms else float("nan")
    print(f"{r.system:15s} (load average {os.getloadavg()[0]:.2f} after) "
          f"rooms {r.rooms}: joined {r.joins}/{r.rooms}, dispatch->agent in room "
          f"p50 {p50:.0f} ms max {worst:.0f} ms")
    if r.finals:  # a density window was measured (not --joins-only)
        print(f"{'':15s} idle {r.idle_cpu:.3f} cores {r.idle_mb:.0f} MB; with jobs "
              f"{r.load_cpu:.3f} cores {r.load_mb:.0f} MB -> {r.core_per_job:.4f} core/job "
              f"({1 / r.core_per_job if r.core_per_job else float('inf'):.0f} jobs/core), "
              f"{r.mb_per_job:.1f} MB/job")
        if r.after_mb:
            print(f"{'':15s} idle after the jobs ended: {r.after_cpu:.3f} cores "
                  f"{r.after_mb:.0f} MB ({r.after_mb - r.idle_mb:+.1f} MB against the idle "
                  "before them)")
        print(f"{'':15s} sentences spoken {r.spoken}, turns ended per room {r.finals} "
              f"(rooms with none: {sum(1 for f in r.finals if f == 0)})")
        if r.load_threads and r.joins:
            print(f"{'':15s} {r.system}'s threads over the window, core per job: "
                  + busiest(r.load_threads, 8, scale=1 / seconds / r.joins, digits=4))
    order = ["offer received", "job accepted", "assignment handled", "room connected",
             "lk.agent.state set", "agent track published", "job running"]
    parts = [f"{name} p50 {statistics.median(r.stages[name]):.0f}"
             for name in order if r.stages.get(name)]
    if parts:
        print(f"{'':15s} join stages, ms after the dispatches: {', '.join(parts)}; "
              f"agent seen by the caller p50 {p50:.0f}")
    if r.burst_wall_s:
        print(f"{'':15s} dispatches to last join {r.burst_wall_s:.2f} s: CPU s {r.system} "
              f"{r.burst_cpu_s:.2f}, livekit-server {r.burst_server_cpu_s:.2f}, callers "
              f"{r.burst_callers_cpu_s:.2f} (of {r.burst_wall_s * (os.cpu_count() or 1):.2f})")
    if r.burst_threads:
        print(f"{'':15s} {r.system}'s threads, CPU s: {busiest(r.burst_threads, 6)}")


def keep_logs(work: Path, into: Path) -> None:
    """The run's logs (service, server, baseline), copied before the temporary folder goes."""
    import shutil

    into.mkdir(parents=True, exist_ok=True)
    for log in sorted({*work.glob("*.log"), *work.glob("*/*.log")}):
        shutil.copy(log, into / f"{log.parent.name}-{log.name}")


def lsb_release_note() -> str | None:
    """What to know when ``lsb_release`` is installed: the SDK runs it on every room connect."""
    from agents.transport.sdk_host import lsb_release_on_path

    found = lsb_release_on_path()
    if found is None:
        return None
    return (f"note: {found} is installed here, and the LiveKit SDK runs it (and getconf) on "
            "every room connect, blocking a worker: joins are slower than on a host without it "
            "like the image; scripts/without-lsb-release CMD measures that")


async def run(args: argparse.Namespace) -> None:
    import tempfile

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores, shared)")
    note = lsb_release_note()
    if note:
        print(note)
    binary = server_binary()
    if binary is None or not binary.exists():
        raise SystemExit("no livekit-server: `make livekit-server` builds it into .tools/")
    systems = args.systems.split(",")
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-density-") as tmp:
        work = Path(tmp)
        server = LiveKitServer(binary=binary, workdir=work / "livekit")
        server.start()
        try:
            async with running_server() as stt:
                stt.transcript = "I would like to book an appointment"
                for name in systems:
                    system: System
                    if name == "ours":
                        system = Ours(server, work / "ours", stt.base_url, args.rooms,
                                      log_level="info" if args.breakdown else "warning")
                    elif name == "ours-unrouted":  # the SDK's own audio event delivery
                        system = Ours(server, work / name, stt.base_url, args.rooms,
                                      routed=False, sdk_frame_ms=10)
                    elif name == "ours-10ms":  # 10 ms SDK events (before sdk_frame_ms: 30)
                        system = Ours(server, work / name, stt.base_url, args.rooms,
                                      sdk_frame_ms=10)
                    elif name == "ours-sdk-logs":  # the SDK's native logs forwarded to Python
                        system = Ours(server, work / name, stt.base_url, args.rooms,
                                      native_logs=True)
                    elif name == "ours-single-pc":  # one peer connection, the SDK's default
                        system = Ours(server, work / name, stt.base_url, args.rooms,
                                      log_level="info" if args.breakdown else "warning",
                                      single_pc=True)
                    elif name == "livekit-agents":
                        system = LiveKitAgents(server, work, idle_processes=args.lk_idle_processes)
                    else:
                        raise SystemExit(f"unknown system {name!r}")
                    profile = args.py_spy if name == "ours" else None
                    results[name] = await measure(
                        system, server, rooms=args.rooms, seconds=args.seconds,
                        idle_seconds=args.idle_seconds, tag=name.replace("-", ""),
                        profile=profile, joins_only=args.joins_only, door=args.door)
                    report(results[name], args.seconds)
                    if profile is not None and profile.exists():
                        print(f"py-spy self time, ours ({profile}):")
                        for frame, share in top_frames(profile):
                            print(f"  {share * 100:5.1f} %  {frame}")
        finally:
            server.stop()
            if args.keep_logs is not None:
                keep_logs(work, args.keep_logs)
    if args.joins_only:
        for r in results.values():
            p50 = statistics.median(r.join_ms) if r.join_ms else float("nan")
            print(f"bench_room_density joins: {r.system} dispatch->agent in room p50 {p50:.0f} ms "
                  f"at a burst of {r.rooms} through the {args.door} door ({r.joins} joined); "
                  f"{r.burst_cpu_s:.2f} CPU s "
                  "dispatch to last join")
        theirs, ours = results.get("livekit-agents"), results.get("ours")
        if theirs is not None and ours is not None and ours.join_ms and theirs.join_ms:
            mine, base = statistics.median(ours.join_ms), statistics.median(theirs.join_ms)
            print(f"bench_room_density joins: {base / mine:.2f} x faster than livekit-agents "
                  f"(dispatch->agent in room p50 {mine:.0f} vs {base:.0f} ms at a burst of "
                  f"{ours.rooms}; joined {ours.joins} vs {theirs.joins})")
        logs = results.get("ours-sdk-logs")
        if logs is not None and ours is not None and ours.burst_cpu_s > 0:
            print(f"native logs kept native: {logs.burst_cpu_s / ours.burst_cpu_s:.2f} x less CPU "
                  f"over the burst ({logs.burst_cpu_s:.2f} -> {ours.burst_cpu_s:.2f} s)")
        return
    unrouted, ours = results.get("ours-unrouted"), results.get("ours")
    if unrouted is not None and ours is not None and ours.core_per_job > 0:
        print(f"audio event routing: {unrouted.core_per_job / ours.core_per_job:.2f} x cheaper "
              f"per job ({unrouted.core_per_job:.4f} -> {ours.core_per_job:.4f} core)")
    small = results.get("ours-10ms")
    if small is not None and ours is not None and ours.core_per_job > 0:
        print(f"30 ms SDK frames: {small.core_per_job / ours.core_per_job:.2f} x cheaper per job "
              f"({small.core_per_job:.4f} -> {ours.core_per_job:.4f} core)")
    theirs = results.get("livekit-agents")
    if ours is not None and theirs is not None and ours.core_per_job > 0:
        for r in (ours, theirs):
            if r.joins < r.rooms:
                print(f"note: {r.system} ran {r.joins} of {r.rooms} jobs; its figures are per job "
                      "that ran, and the ratio compares unequal loads")
        ratio = theirs.core_per_job / ours.core_per_job
        print(f"bench_room_density: {ratio:.2f} x livekit-agents cores per listening job "
              f"(ours {ours.core_per_job:.4f}, theirs {theirs.core_per_job:.4f}; "
              f"MB/job {ours.mb_per_job:.1f} vs {theirs.mb_per_job:.1f}; idle MB "
              f"{ours.idle_mb:.0f} vs {theirs.idle_mb:.0f})")
    elif ours is not None:
        print(f"bench_room_density: {ours.core_per_job:.4f} core per listening job "
              "(no baseline run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=4.0)
    parser.add_argument("--systems", default="ours,livekit-agents")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="FILE",
                        help="profile our service over the window into FILE (collapsed stacks)")
    parser.add_argument("--breakdown", action="store_true",
                        help="ours logs at info level: print where dispatch-to-agent time goes")
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR",
                        help="copy the service's, server's and baseline's logs into DIR")
    parser.add_argument("--lk-idle-processes", type=int, default=0, metavar="N",
                        help="job processes livekit-agents keeps warm before the burst (default: "
                             "its own, one a core); with N = --rooms it joins from warm processes")
    parser.add_argument("--joins-only", action="store_true",
                        help="silent callers, no density window: the dispatch burst alone")
    parser.add_argument("--door", choices=("native", "webhook"), default="native",
                        help="how the jobs are dispatched: CreateDispatch (native) or our signed "
                             "webhook (our systems only)")
    args = parser.parse_args()
    if not in_private_netns():
        if "livekit-agents" in args.systems.split(","):
            ensure_lk_agents()  # before the private namespace, which has no route to PyPI
        netns = ROOT / "scripts" / "netns-run"
        os.execv(str(netns), [str(netns), sys.executable, __file__, *sys.argv[1:]])
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
