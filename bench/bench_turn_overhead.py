"""Framework overhead per voice turn, with zero-latency fake providers.

Measures, for each turn, the time from the end-of-turn decision (the silence window closing, in
``push_audio``) to the first audio frame handed to the room's audio output: everything the
pipeline itself adds (queues, tasks, speech recognition and model call plumbing, sentence split,
framing). Baseline, measured in the same run: one bare asyncio hop (a queue put to a waiting
consumer task), the least any task-based design pays.

Run: ``.venv/bin/python bench/bench_turn_overhead.py [turns]``. Last line is the headline.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakes import FakeLLM, FakeMessageOutput, silence, speech  # noqa: E402
from percentiles import nearest_rank as pct  # noqa: E402
from pipeline_kit import AGENT, make_kit  # noqa: E402

from agents.messages import OutboundMessage  # noqa: E402

TARGET_P99_MS = 20.0


async def baseline(n: int) -> list[float]:
    queue: asyncio.Queue[float] = asyncio.Queue()
    out: list[float] = []

    async def consumer() -> None:
        for _ in range(n):
            sent = await queue.get()
            out.append((time.perf_counter() - sent) * 1000.0)

    task = asyncio.create_task(consumer(), name="bench-baseline")
    for _ in range(n):
        queue.put_nowait(time.perf_counter())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await task
    return out


class _Messages(FakeMessageOutput):
    """Counts the agent's final transcripts without the tests' predicate polling."""

    def __init__(self) -> None:
        super().__init__()
        self.finals = 0
        self.turn_done = asyncio.Event()

    async def publish(self, message: OutboundMessage) -> None:
        if message.type == "transcript_chunk" and message.data.is_final \
                and message.data.participant_id == AGENT:
            self.finals += 1
            self.turn_done.set()


async def turns(n: int) -> list[float]:
    msgs = _Messages()
    kit = make_kit(llm=FakeLLM(default="Sure, here is the answer. It has two sentences."),
                   msgs=msgs)
    overheads: list[float] = []
    task = asyncio.create_task(kit.pipeline.run(), name="bench-run")
    for _ in range(n):
        msgs.turn_done.clear()
        kit.feed(speech(200) + silence(200))
        await asyncio.wait_for(msgs.turn_done.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for turn in kit.pipeline.record()["turns"]:
        stages = turn["stages"]
        overheads.append(stages["first_audio"] - stages["turn_decided"])
    return overheads


async def main(n: int) -> None:
    await turns(20)  # warm-up: imports, first allocations
    base = await baseline(n * 10)
    over = await turns(n)
    b50, b99 = statistics.median(base), pct(base, 0.99)
    p50, p99 = statistics.median(over), pct(over, 0.99)
    print(f"baseline asyncio hop: p50 {b50:.3f} ms  p99 {b99:.3f} ms  (n={len(base)})")
    print(f"turn overhead (decision -> first frame): p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
          f"(n={len(over)})")
    print(f"ratio to baseline: p50 x{p50 / b50:.0f}  p99 x{p99 / b99:.0f}")
    print(f"turn_overhead_p99: {p99:.2f} ms (target < {TARGET_P99_MS:.0f} ms)")


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
