"""Voice to voice on a real LiveKit server: from the end of the caller's speech to the first agent
audio the caller hears, and how fast speaking over the agent silences it.

A real ``livekit-server`` and ``external-agent serve`` (the embedded stack: Silero, Moonshine, the
scripted responder, Piper), as the real-server tests run them, inside a private network
namespace (``scripts/netns-run``; the script re-runs itself in one). A caller joins through the
``livekit`` SDK and speaks utterances rendered offline (Piper's voice, espeak-ng phonemes) in
real time at 48 kHz: plain sentences, and sentences with a mid-sentence pause or a filler
("my phone number is ... five five five"). Per utterance it measures, at the caller:

- **latency**: end of the caller's speech (the utterance is trimmed of its own trailing silence)
  to the first voiced 10 ms frame of the agent's answer;
- **cut-off**: the agent took the turn (its ``thinking`` status reached the caller) before the
  caller had finished the utterance: a premature end of turn at the pause;
- **barge-in** (every other turn): the caller says "Wait." over the answer; from that word's
  onset to the agent's last voiced frame before it falls silent (0.5 s of silence, or its next
  ``thinking`` status: the answer to "Wait." can follow sooner than that). The job's count of
  false interruptions is printed with it: a "Wait." the agent resumed from would look fast.

Each round renders the utterances anew: Piper's voice varies from one rendering to the next, as
a person's does, and the end-of-turn model's judgement with it, so a p95 over rounds that
repeated one rendering would count one misjudged rendering once per round. Every variant hears
the same renderings, in the same order.

Three runs of the same utterances, each with a fresh service: ``turn.detector: silence`` with
only the transcript speculative (``speculative_answer: off``: the baseline, as before the model's
answer was speculative), then ``silence`` and ``smart-turn`` with the model's answer and its first
clause's speech started at the pause (``speculative_answer: speech``, the default). Targets:
p50 < 700 ms and p95 < 900 ms for smart-turn, barge-in p50 < 300 ms, and no more cut-offs than
the baseline.

Run: ``.venv/bin/python bench/bench_voice_to_voice.py [rounds] [variant ...]`` (needs ``make
livekit-server``); variants are ``silence/off``, ``silence/speech``, ``smart-turn/speech``, ...
(detector/speculative_answer, optionally /barge_in_fast_ms[/barge_in_fast_confidence]:
``silence/speech/64/0.8``; ``/0`` turns the fast pause off; ``@2``: speech recognition and
synthesis on 2 onnxruntime threads each, ``@1,2``: recognition on 1, synthesis on 2;
``~96``: the final transcript starts after 96 ms of silence, ``turn.speculate_ms``;
``+key=value``: any other ``turn`` setting, e.g. ``+sentence_end_ms=500``; ``:float32``:
Moonshine's decoder in float32, as before it ran in int8; ``:whole``: Piper synthesises whole
sentences, as before it streamed windows; ``:float32,whole``: both; ``:single-pc``: the agent
joins with one peer connection, the SDK's default, instead of two), the first one is the
baseline.
``BENCH_KEEP_LOGS=DIR`` keeps the services' and the server's logs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from livekit_env import (  # noqa: E402
    MIC_RATE,
    LiveKitServer,
    RealCaller,
    in_private_netns,
    server_binary,
)
from percentiles import nearest_rank as _pct  # noqa: E402
from stage import RealStage, real_service  # noqa: E402

TARGET_P50_MS = 700.0
TARGET_P95_MS = 900.0
TARGET_BARGE_P50_MS = 300.0
GAP_S = 0.7
"""A mid-sentence pause: longer than the silence detector's 500 ms window."""
MIC_QUEUE_MS = int(os.environ.get("BENCH_MIC_QUEUE_MS", "20"))
"""The caller's microphone queue (ms). Its pacing loop catches up after a stall of a busy CPU
and then runs this far ahead of real time: the end of speech it records is early by up to this
much, which the latency figures would count as the room's. A browser's capture buffer is 10 ms."""

PLAIN = [
    "I would like to book a table for two people tonight.",
    "My name is Ada Lovelace.",
    "Can you tell me what time you open tomorrow morning?",
    "The order number is four five six seven.",
    "I need to change my delivery address, please.",
    "Yes, that is correct.",
]
PAUSED = [
    ("My phone number is", "five five five, one two three four."),
    ("I would like to, um,", "book a table for Friday."),
    ("So the problem is that", "the screen stays black."),
    ("Um,", "I think my account is locked."),
]
BARGE = "Wait."


def _trim(pcm: np.ndarray, *, dbfs: float = -40.0) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames quieter than ``dbfs``)."""
    frame = MIC_RATE // 100
    n = pcm.size // frame
    rms = np.sqrt(np.mean(pcm[: n * frame].astype(np.float32).reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > 32768.0 * 10 ** (dbfs / 20))
    if loud.size == 0:
        return pcm
    return pcm[loud[0] * frame : (loud[-1] + 1) * frame]


@dataclass
class Utterance:
    text: str
    pcm: np.ndarray
    paused: bool


@dataclass
class Run:
    detector: str
    answer: str
    fast: str = ""
    """``barge_in_fast_ms`` and optionally ``/barge_in_fast_confidence`` (empty: the defaults)."""
    threads: tuple[int, int] = (1, 1)
    """onnxruntime threads of speech recognition and of synthesis (``@N`` or ``@N,M``)."""
    float32: bool = False
    """Moonshine's decoder in float32 (``:float32``; default int8)."""
    whole: bool = False
    """Piper synthesises whole sentences (``:whole``; default streamed windows)."""
    single_pc: bool = False
    """The agent joins with one peer connection (``:single-pc``; default two)."""
    speculate_ms: int | None = None
    """``turn.speculate_ms`` (``~N``; default: at ``pause_ms``)."""
    overrides: tuple[str, ...] = ()
    """Other ``turn`` settings (``+key=value``)."""
    latencies: list[float] = field(default_factory=list)
    paused_latencies: list[float] = field(default_factory=list)
    cutoffs: int = 0
    paused_utterances: int = 0
    barge_ins: list[float] = field(default_factory=list)
    false_interruptions: int = 0
    """The job's count: a barge-in the agent resumed from counts as one (and its stop time is
    the pause, which the figure alone would not tell)."""
    missed: int = 0
    traces: list[dict[str, Any]] = field(default_factory=list)
    speculation: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)
    """smart-turn: the turns its end-of-turn work ended, by how (``look_0``, ``look_1``, ...)."""

    @property
    def label(self) -> str:
        fast = f"/{self.fast}" if self.fast else ""
        threads = "" if self.threads == (1, 1) else "@" + ",".join(map(str, self.threads))
        early = f"~{self.speculate_ms}" if self.speculate_ms else ""
        more = "".join(f"+{o}" for o in self.overrides)
        flags = ",".join(f for f, on in (("float32", self.float32), ("whole", self.whole),
                                         ("single-pc", self.single_pc)) if on)
        flags = f":{flags}" if flags else ""
        return f"{self.detector}/{self.answer}{fast}{early}{more}{threads}{flags}"


class _Voice:
    """The caller's voice: one Piper instance (espeak-ng phonemes), 48 kHz like a microphone."""

    def __init__(self) -> None:
        from agents.providers.piper_tts import PiperTTS

        self.tts = PiperTTS(name="caller-voice", length_scale=1.05, streaming=False)

    async def say(self, text: str) -> np.ndarray:
        from livekit import rtc

        pcm = np.concatenate([c async for c in self.tts.synthesize(text)])
        resampler = rtc.AudioResampler(self.tts.sample_rate, MIC_RATE, num_channels=1)
        frames = resampler.push(bytearray(pcm.tobytes())) + resampler.flush()
        return _trim(np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]))


async def _utterances(voice: _Voice) -> list[Utterance]:
    out = [Utterance(t, await voice.say(t), False) for t in PLAIN]
    gap = np.zeros(int(GAP_S * MIC_RATE), np.int16)
    for first, second in PAUSED:
        pcm = np.concatenate([await voice.say(first), gap, await voice.say(second)])
        out.append(Utterance(f"{first} ... {second}", pcm, True))
    # interleave so both kinds meet a warm and a cold agent alike
    plain, paused = out[: len(PLAIN)], out[len(PLAIN) :]
    mixed: list[Utterance] = []
    while plain or paused:
        if plain:
            mixed.append(plain.pop(0))
        if paused:
            mixed.append(paused.pop(0))
    return mixed


def _decided_before(caller: RealCaller, after: int, t: float) -> bool:
    """The agent took the turn (``thinking``) before ``t``, the end of the caller's speech."""
    return any(
        m.type == "agent_status" and m.data["status"] == "thinking" and m.at < t
        for m in caller.received[after:]
    )


async def _quiet(caller: RealCaller, since: float, *, silence_s: float = 1.2) -> None:
    """Wait until the agent has been silent for ``silence_s`` (its answer is over)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(30):
        while True:
            frames = caller.audio.frames
            last = max((at for at, v in frames if v and at >= since), default=since)
            if loop.time() - last >= silence_s:
                return
            await asyncio.sleep(0.1)


async def run_detector(server: LiveKitServer, workdir: Path, variant: str,
                       rounds: list[list[Utterance]], barge: np.ndarray) -> Run:
    variant, _, flagged = variant.partition(":")
    flags = set(filter(None, flagged.split(",")))
    known = {"float32", "whole", "single-pc"}
    if flags - known:
        raise SystemExit(f"unknown flags {sorted(flags - known)}: "
                         ":float32, :whole and :single-pc")
    variant, _, threads = variant.partition("@")
    variant, *overrides = variant.split("+")
    variant, _, early = variant.partition("~")
    detector, answer, *fast = variant.split("/")
    stt_threads, _, tts_threads = (threads or "1").partition(",")
    run = Run(detector=detector, answer=answer, fast="/".join(fast), float32="float32" in flags,
              whole="whole" in flags, single_pc="single-pc" in flags,
              threads=(int(stt_threads), int(tts_threads or stt_threads)),
              speculate_ms=int(early) if early else None, overrides=tuple(overrides))
    tag = "-".join([detector, answer, *fast, *[f"s{early}"][:bool(early)],
                    *(re.sub(r"[^A-Za-z0-9_]", "", o) for o in overrides),
                    "t{}-{}".format(*run.threads), *sorted(flags)])
    turn: dict[str, Any] = {"detector": detector, "speculative_answer": answer}
    if fast:
        turn["barge_in_fast_ms"] = int(fast[0])
    if len(fast) > 1:
        turn["barge_in_fast_confidence"] = float(fast[1])
    if early:
        turn["speculate_ms"] = int(early)
    for o in overrides:
        key, _, value = o.partition("=")
        turn[key] = yaml.safe_load(value)
    pipeline: dict[str, Any] = {"turn": turn}
    if threads or flags:
        pipeline["providers"] = {
            "moonshine": {"type": "moonshine", "model": "base", "threads": run.threads[0],
                          "int8": not run.float32},
            "piper": {"type": "piper", "threads": run.threads[1], "streaming": not run.whole}}
    agent: dict[str, Any] = {"persona": {"greeting": "Hello.", "todo_items": []},
                             "pipeline": pipeline}
    if "single-pc" in flags:  # one peer connection, the SDK's own default
        agent["room"] = {"single_peer_connection": True}
    service = real_service(server, workdir / tag, agent=agent)
    await service.start(within=120)
    stage = RealStage(server=server, service=service, mic_queue_ms=MIC_QUEUE_MS)
    loop = asyncio.get_running_loop()
    try:
        room = f"v2v-{tag}"
        caller = await stage.caller(room, "caller")
        job_id = f"AJ_v2v_{tag.replace('-', '_')}"
        r = await stage.dispatch(job_id=job_id, room=room)
        assert r.status_code == 200 and r.json()["accepted"], r.text
        await caller.audio.wait_voiced_after(0, within=60)  # the greeting
        await _quiet(caller, 0)
        # warm-up: the first answer loads nothing (prewarm) but primes the caches
        ended = await caller.say(rounds[0][0].pcm)
        await caller.audio.wait_voiced_after(ended, within=20)
        await _quiet(caller, ended)
        n = 0
        for utterances in rounds:
            for utt in utterances:
                n += 1
                seen = len(caller.received)
                try:
                    ended = await caller.say(utt.pcm)
                except TimeoutError:  # the microphone could not keep real time (a busy CPU)
                    run.missed += 1
                    await _quiet(caller, loop.time() - 1)
                    continue
                try:
                    heard = await caller.audio.wait_voiced_after(ended, within=10)
                except TimeoutError:
                    run.missed += 1
                    await _quiet(caller, ended)
                    continue
                latency = (heard - ended) * 1000.0
                (run.paused_latencies if utt.paused else run.latencies).append(latency)
                if n % 2 == 0:  # speak over the answer
                    await asyncio.sleep(1.0)
                    onset = loop.time()
                    await caller.say(barge)
                    stopped = await _stopped(caller, onset)
                    run.barge_ins.append(max(0.0, stopped - onset) * 1000.0)
                await _quiet(caller, ended)
                await asyncio.sleep(0.5)  # late transcripts
                if utt.paused:
                    run.paused_utterances += 1
                    run.cutoffs += _decided_before(caller, seen, ended)
        run.traces = [m.data["stages"] for m in caller.received
                      if m.type == "agent_metrics" and m.data["kind"] == "voice"]
        await caller.leave()
        job = await stage.wait_job(job_id, within=30)
        run.speculation = _speculation(job)
        run.ends = dict((job.get("record", {}).get("conversation") or {}).get("end_of_turn")
                        or {})
        counters = (job.get("record", {}).get("conversation") or {}).get("counters") or {}
        run.false_interruptions = int(counters.get("false_interruptions", 0))
    finally:
        await stage.aclose()
        await service.stop()
    return run


async def _stopped(caller: RealCaller, onset: float) -> float:
    """When the answer the caller spoke over fell silent at the caller: its last voiced frame
    before 0.5 s of silence, or, when the agent's next status ``thinking`` (its answer to the
    interruption, which can follow the stop with less silence than that) comes first, its last
    voiced frame before that status."""
    async with asyncio.timeout(10):
        while True:
            at = caller.audio.last_voiced_before_silence(onset, silence_s=0.5)
            if at is not None:
                return at
            thinking = next((m.at for m in caller.received if m.at >= onset
                             and m.type == "agent_status" and m.data["status"] == "thinking"),
                            None)
            if thinking is not None:
                return max((t for t, v in caller.audio.frames if v and onset <= t < thinking),
                           default=onset)
            await asyncio.sleep(0.02)


def _speculation(job: dict[str, Any]) -> dict[str, int]:
    """The job record's speculative-answer counts (started, kept, dropped, ...)."""
    conversation = job.get("record", {}).get("conversation") or {}
    counts: dict[str, int] = conversation.get("speculative_answers") or {}
    return counts


def _report(run: Run) -> None:
    every = run.latencies + run.paused_latencies
    print(f"== {run.label}: {len(every)} turns ({len(run.paused_latencies)} with a pause), "
          f"{run.missed} unanswered")
    for name, values in (("plain", run.latencies), ("paused", run.paused_latencies),
                         ("all", every)):
        if values:
            print(f"  end of speech -> agent heard ({name:<6}) p50 {statistics.median(values):6.0f}"
                  f" ms  p95 {_pct(values, 0.95):6.0f} ms  min {min(values):6.0f} ms")
    if run.barge_ins:
        barge = statistics.median(run.barge_ins)
        print(f"  barge-in: voice onset -> agent silent  p50 {barge:6.0f}"
              f" ms  p95 {_pct(run.barge_ins, 0.95):6.0f} ms  ({len(run.barge_ins)} times; "
              f"false interruptions in the call: {run.false_interruptions})")
    print(f"  premature cut-offs: {run.cutoffs} of {run.paused_utterances} paused utterances")
    stages = ("turn_decided", "final_transcript", "first_token", "first_audio")
    medians = {st: statistics.median([t[st] for t in run.traces if st in t] or [float("nan")])
               for st in stages}
    print("  the service's trace (p50 ms after its end of speech): "
          + ", ".join(f"{st} {ms:.0f}" for st, ms in medians.items()))
    if run.speculation:
        print("  speculative answers: "
              + ", ".join(f"{k} {v}" for k, v in sorted(run.speculation.items())))
    if run.detector == "smart-turn":
        voice_turns = sum("end_of_speech" in t for t in run.traces)
        print(f"  turns ended by the end-of-turn model ({voice_turns} voice turns, warm-up and "
              "\"Wait.\" included; the rest waited max_silence_ms): "
              + (", ".join(f"{k} {v}" for k, v in sorted(run.ends.items())) or "none"))


VARIANTS = ("silence/off", "silence/speech", "smart-turn/speech")


async def main(rounds: int, variants: tuple[str, ...]) -> int:
    voice = _Voice()
    try:
        renderings = [await _utterances(voice) for _ in range(rounds)]
        barge = await voice.say(BARGE)
    finally:
        await voice.tts.aclose()
    binary = server_binary()
    assert binary is not None
    keep = os.environ.get("BENCH_KEEP_LOGS")  # a directory: the services' logs stay there
    with (contextlib.nullcontext(tempfile.mkdtemp(prefix="v2v-", dir=keep)) if keep
          else tempfile.TemporaryDirectory(prefix="bench-v2v-")) as tmp:
        server = LiveKitServer(binary=binary, workdir=Path(tmp) / "server")
        server.start()
        try:
            runs = [await run_detector(server, Path(tmp), v, renderings, barge)
                    for v in variants]
        finally:
            server.stop()
    for run in runs:
        _report(run)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), "
          f"{os.getloadavg()[1]:.1f} (5 min) on {os.cpu_count()} cores")
    base = runs[0]
    b_all = base.latencies + base.paused_latencies
    if not b_all:
        print("no answered turns in the baseline: nothing to compare")
        return 1
    b50 = statistics.median(b_all)
    for run in runs[1:]:
        s_all = run.latencies + run.paused_latencies
        if not s_all:
            print(f"{run.label}: no answered turns")
            continue
        p50, p95 = statistics.median(s_all), _pct(s_all, 0.95)
        barge_p50 = statistics.median(run.barge_ins) if run.barge_ins else float("nan")
        print(f"{run.label} vs {base.label} (same run): p50 {p50:.0f} vs {b50:.0f} ms "
              f"({p50 / b50:.2f}x), p95 {p95:.0f} vs {_pct(b_all, 0.95):.0f} ms, cut-offs "
              f"{run.cutoffs} vs {base.cutoffs}")
        print(f"voice_to_voice {run.label}: p50 {p50:.0f} ms (target < {TARGET_P50_MS:.0f}), "
              f"p95 {p95:.0f} ms (target < {TARGET_P95_MS:.0f}), barge-in p50 {barge_p50:.0f} ms "
              f"(target < {TARGET_BARGE_P50_MS:.0f}), cut-offs {run.cutoffs} vs baseline "
              f"{base.cutoffs}")
    return 0


if __name__ == "__main__":
    if server_binary() is None:
        print("SKIPPED bench_voice_to_voice: no livekit-server (`make livekit-server` builds it)")
        sys.exit(0)
    if not in_private_netns():
        netns = str(ROOT / "scripts" / "netns-run")
        os.execv(netns, [netns, sys.executable, *sys.argv])
    logging.getLogger("livekit").setLevel(logging.ERROR)
    started = time.perf_counter()
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    code = asyncio.run(main(rounds, tuple(sys.argv[2:]) or VARIANTS))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
