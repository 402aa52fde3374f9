"""Resident memory of the embedded speech models' onnxruntime sessions under three allocators.

Each mode runs in a fresh subprocess: the bundled Piper voice speaks ``texts`` sentences of
varied length, two at a time (every input shape differs, which is what makes an arena grow),
through the provider's own code. Resident memory (VmRSS) is read after the first pair and after
the run. The baseline is onnxruntime's default, a CPU arena per session (what the service uses);
measured in the same run: the same with glibc held to two malloc arenas (``MALLOC_ARENA_MAX=2``),
and no onnxruntime arena at all with that. The headline is the end RSS of each against the
baseline (issue 16: does an allocator setting bound the replica's memory?).

    python bench/bench_onnx_memory.py [texts=40]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bakers sell warm bread to the "
    "people waiting at the station on a cold and windy morning in early november"
).split()


CONCURRENT = 2
MODES = {
    "arena": {},
    "arena, MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
    "no-arena, MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _workload(texts: int, mode: str) -> dict[str, float]:
    import numpy as np

    from agents.providers import onnx

    plain = onnx.session_options

    def variant(*, threads: int = 1) -> object:
        opts = plain(threads=threads)
        opts.enable_cpu_mem_arena = not mode.startswith("no-arena")
        return opts

    onnx.session_options = variant  # type: ignore[assignment]
    from agents.providers.base import CallPolicy
    from agents.providers.piper_tts import PiperTTS

    # Generous deadlines: the machine may be busy; what is measured is memory.
    tts = PiperTTS(policy=CallPolicy(timeout=120.0, chunk_timeout=120.0))
    rss: dict[str, float] = {"start": _rss_mb()}
    started = time.perf_counter()
    try:
        async def speak(n: int) -> None:
            count = 3 + (n * 7) % 40  # 3 to 42 words
            text = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(count)) + "."
            pcm = np.concatenate([c async for c in tts.synthesize(text)])
            del pcm

        for first in range(0, texts, CONCURRENT):  # calls overlap, as in a busy replica
            await asyncio.gather(*(speak(n) for n in range(first, first + CONCURRENT)))
            if first == 0:
                rss["warm"] = _rss_mb()
        rss["end"] = _rss_mb()
        rss["seconds"] = time.perf_counter() - started
    finally:
        await tts.aclose()
    return rss


def _child(texts: int, mode: str) -> None:
    print(json.dumps(asyncio.run(_workload(texts, mode))))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--child" in sys.argv:
        _child(int(args[0]), args[1])
        return
    texts = int(args[0]) if args else 40
    results = {}
    for mode, env in MODES.items():
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(texts), mode],
            capture_output=True, text=True, check=True, timeout=900,
            env={**os.environ, **env},
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:>28}: start {r['start']:.0f} MB, after warm-up {r['warm']:.0f} MB, "
              f"after {texts} utterances {r['end']:.0f} MB, {r['seconds']:.1f} s")
    base = results["arena"]
    line = ", ".join(
        f"{mode} {r['end']:.0f} MB ({r['end'] / base['end']:.2f}x, "
        f"+{r['end'] - r['warm']:.0f} MB after warm-up)"
        for mode, r in results.items()
        if mode != "arena"
    )
    print(
        f"onnx memory: end RSS per-session arena (baseline) {base['end']:.0f} MB "
        f"(+{base['end'] - base['warm']:.0f} MB after warm-up); {line}"
    )


if __name__ == "__main__":
    main()
