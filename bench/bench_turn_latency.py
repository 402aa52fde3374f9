"""End of user speech to first agent audio, on the embedded stack (Silero, Moonshine, scripted
intake, Piper), with the default turn settings (500 ms silence window).

A simulated caller speaks Piper-made prompts into the pipeline in real time (10 ms frames, paced
by the clock, silence between prompts), as a room would deliver them. Each turn's trace gives the
stages: turn decided (silence window closed), final transcript, first model token, first audio
frame handed to the room. The first turn is a warm-up (model loading) and is not counted.
Baseline in the same run: the silence window itself, which the turn cannot beat.

Run: ``.venv/bin/python bench/bench_turn_latency.py [turns]`` (needs the ``embedded`` extra).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import structlog
from livekit import rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakes import FakeAudioOutput  # noqa: E402
from percentiles import nearest_rank  # noqa: E402
from pipeline_kit import USER, job_spec  # noqa: E402

from agents.config import PersonaConfig  # noqa: E402
from agents.messages import OutboundMessage  # noqa: E402
from agents.pipeline.config import PipelineConfig  # noqa: E402
from agents.pipeline.factory import make_conversation_factory  # noqa: E402

TARGET_P50_MS = 1000.0
PROMPTS = [
    "I would like to book a table for two people tonight.",
    "My name is Ada Lovelace.",
    "Can you tell me what time you open tomorrow morning?",
    "The order number is four five six seven.",
]
STAGES = ["turn_decided", "final_transcript", "first_token", "first_audio"]


class _Messages:
    def __init__(self) -> None:
        self.turn_done = asyncio.Event()

    async def publish(self, message: OutboundMessage) -> None:
        if message.type == "agent_metrics":
            self.turn_done.set()


def _to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    n = int(len(pcm) * 16000 / rate)
    grid = np.linspace(0, len(pcm) - 1, n)
    return np.interp(grid, np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)


async def speak_in_real_time(conv: object, samples: np.ndarray, stop: asyncio.Event) -> None:
    """Push ``samples`` then silence, one 10 ms frame per 10 ms, until ``stop`` is set."""
    push = conv.push_audio  # type: ignore[attr-defined]
    start = time.perf_counter()
    i = 0
    while True:
        chunk = samples[i * 160 : (i + 1) * 160]
        if chunk.size < 160:
            if stop.is_set():
                return
            chunk = np.zeros(160, dtype=np.int16)
        push(USER, rtc.AudioFrame(data=chunk.tobytes(), sample_rate=16000, num_channels=1,
                                  samples_per_channel=160))
        i += 1
        delay = start + i * 0.01 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def main(turns: int) -> None:
    results = {}
    for detector in ("silence", "smart-turn"):
        results[detector] = await run_detector(detector, turns)
    base, smart = results["silence"], results["smart-turn"]
    print(f"first audio p50: smart-turn {smart:.0f} ms vs silence {base:.0f} ms "
          f"({smart / base:.2f}x)")
    print(f"end_of_speech_to_first_audio_p50: {smart:.0f} ms (target < {TARGET_P50_MS:.0f} ms)")


async def run_detector(detector: str, turns: int) -> float:
    cfg = PipelineConfig.model_validate({"turn": {"detector": detector}})
    factory = make_conversation_factory(cfg)
    tts = factory.registry.tts(cfg.audio.tts or "piper")
    prompts = []
    for text in PROMPTS:
        pcm = np.concatenate([c async for c in tts.synthesize(text)])
        prompts.append(_to_16k(pcm, tts.sample_rate))
    msgs = _Messages()
    conv = factory(spec=job_spec(), audio=FakeAudioOutput(sample_rate=tts.sample_rate),
                   messages=msgs, persona=PersonaConfig())
    run = asyncio.create_task(conv.run(), name="bench-run")
    for n in range(turns + 1):
        msgs.turn_done.clear()
        await speak_in_real_time(conv, prompts[n % len(prompts)], msgs.turn_done)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await factory.aclose()
    traces = [t["stages"] for t in conv.record()["turns"] if t["kind"] == "voice"][1:]
    print(f"== {detector}: turns: {len(traces)} (after one warm-up), silence window "
          f"{cfg.turn.silence_ms} ms, pause {cfg.turn.pause_ms} ms")
    for stage in STAGES:
        values = [t[stage] for t in traces if stage in t]
        p50 = statistics.median(values)
        p95 = nearest_rank(values, 0.95)
        print(f"  end_of_speech -> {stage:<16} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    first = [t["first_audio"] for t in traces]
    return statistics.median(first)


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
