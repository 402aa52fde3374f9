"""CPU and memory of the vision path per 1280x720 video stream, excluding the model.

A simulated stream delivers 30 frames per second for ``SECONDS`` seconds of stream time (a fake
clock, pushed as fast as the machine goes). Each frame is made as the SDK makes a decoded frame
(a fresh copy of the I420 bytes into an ``rtc.VideoFrame``). Measured with ``process_time``
(every thread of the process):

- baseline: producing the frames alone and handing them to a sink that drops them;
- vision: the same frames into a FrameStore sampling at 1 fps and 5 fps (conversion, JPEG,
  thumbnail) and the vision pipeline's change check on each sample (with a model that answers
  at once and a 0.5 s rate limit, so descriptions are requested but cost nothing).

The vision cost is (vision - baseline) CPU seconds per stream second, as a share of one core.
Memory per stream: what the store holds for images after the run, what is still allocated
(tracemalloc, after a settle), and the peak while running (one raw frame in flight included).

Run: ``.venv/bin/python bench/bench_vision.py``.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import cv2
import numpy as np
import structlog
from livekit import rtc
from prometheus_client import CollectorRegistry

from agents.messages import OutboundMessage
from agents.providers.base import LLM, ChatRequest, LLMEvent, TextDelta
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore
from agents.vision.metrics import VisionMetrics
from agents.vision.pipeline import VisionPipeline

W, H, INPUT_FPS, SECONDS = 1280, 720, 30, 20
TARGET_PCT = 2.0


class InstantVisionLLM(LLM):
    supports_vision = True

    async def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        yield TextDelta("Something moved.")


class DropMessages:
    async def publish(self, message: OutboundMessage) -> None:
        return None


@dataclass(frozen=True, order=True)
class Memory:
    held: int
    """Bytes the store holds for images (JPEGs, thumbnails, pending frames)."""
    traced: int
    """Python allocations still alive after the run (tracemalloc)."""
    peak: int


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scenes(n: int = 6) -> list[bytes]:
    """Textured I420 frames, different enough that some samples count as changes."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        rgb = rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8)
        rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_CUBIC)
        cv2.putText(rgb, f"SCENE {i}", (100, 360), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255), 8)
        out.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return out


def decoded(buf: bytes) -> rtc.VideoFrame:
    return rtc.VideoFrame(W, H, rtc.VideoBufferType.I420, bytearray(buf))


async def run_baseline(bufs: list[bytes]) -> float:
    kept: list[rtc.VideoFrame] = []
    start = time.process_time()
    for i in range(INPUT_FPS * SECONDS):
        f = decoded(bufs[(i // INPUT_FPS) % len(bufs)])
        kept[:] = [f]
        await asyncio.sleep(0)
    return time.process_time() - start


async def run_vision(bufs: list[bytes], fps: float) -> tuple[float, int, Memory]:
    clock = Clock()
    cfg = VisionConfig(fps=fps, min_interval_s=0.5, pipeline=["visionllm"])
    metrics = VisionMetrics(registry=CollectorRegistry())
    store = FrameStore(config=cfg, clock=clock, metrics=metrics)
    pipeline = VisionPipeline(
        frames=store, llm=InstantVisionLLM(name="instant"), messages=DropMessages(),
        config=cfg, clock=clock, metrics=metrics,
    )
    tracemalloc.start()
    start = time.process_time()
    seq = 0
    for i in range(INPUT_FPS * SECONDS):
        store.push_video("bench", "camera", decoded(bufs[(i // INPUT_FPS) % len(bufs)]))
        await store.drain()
        if store.seq != seq:
            seq = store.seq
            await pipeline.check_once()
        clock.now += 1.0 / INPUT_FPS
    cpu = time.process_time() - start
    await asyncio.sleep(0.1)  # let the converter thread drop its last work item
    gc.collect()
    traced, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sampled = store.record()["bench/camera"]["converted"]
    held = store.held_bytes()
    await store.aclose()
    return cpu, sampled, Memory(held=held, traced=traced, peak=peak)


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings up
    bufs = scenes()
    await run_baseline(bufs)  # warm up
    await run_vision(bufs, 1.0)
    baseline = min([await run_baseline(bufs) for _ in range(3)])
    print(f"stream: {W}x{H} I420 at {INPUT_FPS} fps, {SECONDS} s of stream time per run")
    print(f"baseline (frames alone): {100 * baseline / SECONDS:.2f} % of a core")
    headline = 0.0
    for fps in (1.0, 5.0):
        runs = [await run_vision(bufs, fps) for _ in range(3)]
        cpu, sampled, mem = min(runs)
        pct = 100 * max(cpu - baseline, 0.0) / SECONDS
        ratio = cpu / baseline if baseline > 0 else float("inf")
        per_sample_ms = 1000 * max(cpu - baseline, 0.0) / max(sampled, 1)
        print(
            f"vision at {fps:g} fps: {pct:.2f} % of a core per stream over baseline "
            f"({ratio:.2f}x baseline CPU), {sampled} samples, {per_sample_ms:.2f} ms per sample; "
            f"memory: {mem.held / 1024:.0f} KiB held by the store, {mem.traced / 1024:.0f} KiB "
            f"still allocated, {mem.peak / 1024:.0f} KiB peak"
        )
        if fps == 1.0:
            headline = pct
    print(f"vision_cpu_per_stream_1fps: {headline:.2f} % of a core (target < {TARGET_PCT:g} %)")


if __name__ == "__main__":
    asyncio.run(main())
