"""Resident memory of the shared onnxruntime sessions with and without the CPU memory arena.

Each mode runs in a fresh subprocess: the bundled Piper voice speaks ``texts`` sentences of
varied length (every input shape differs, which is what makes an arena grow), through the
provider's own code. Resident memory (VmRSS) is read after a
warm-up and after the run. The baseline is the same workload with onnxruntime's CPU arena on
(its default, and ours before issue 16), measured in the same run. The headline is the growth
after warm-up and the end RSS of each mode.

    python bench/bench_onnx_memory.py [texts=40]
"""

from __future__ import annotations

import asyncio
import json
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


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _workload(texts: int, arena: bool) -> dict[str, float]:
    import numpy as np

    from agents.providers import onnx

    if arena:  # the baseline: onnxruntime's default
        plain = onnx.session_options

        def with_arena(*, threads: int = 1) -> object:
            opts = plain(threads=threads)
            opts.enable_cpu_mem_arena = True
            return opts

        onnx.session_options = with_arena  # type: ignore[assignment]
    from agents.providers.piper_tts import PiperTTS

    tts = PiperTTS()
    rss: dict[str, float] = {"start": _rss_mb()}
    started = time.perf_counter()
    try:
        for n in range(texts):
            count = 3 + (n * 7) % 40  # 3 to 42 words
            text = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(count)) + "."
            pcm = np.concatenate([c async for c in tts.synthesize(text)])
            if n == 4:
                rss["warm"] = _rss_mb()
            del pcm
        rss["end"] = _rss_mb()
        rss["seconds"] = time.perf_counter() - started
    finally:
        await tts.aclose()
    return rss


def _child(texts: int, arena: bool) -> None:
    print(json.dumps(asyncio.run(_workload(texts, arena))))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--child" in sys.argv:
        _child(int(args[0]), args[1] == "arena")
        return
    texts = int(args[0]) if args else 40
    results = {}
    for mode in ("arena", "no-arena"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(texts), mode],
            capture_output=True, text=True, check=True, timeout=900,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:>9}: start {r['start']:.0f} MB, after warm-up {r['warm']:.0f} MB, "
              f"after {texts} utterances {r['end']:.0f} MB, {r['seconds']:.1f} s")
    grow = {m: r["end"] - r["warm"] for m, r in results.items()}
    print(
        f"onnx memory: growth after warm-up {grow['no-arena']:.0f} MB without the CPU arena vs "
        f"{grow['arena']:.0f} MB with it (baseline); end RSS {results['no-arena']['end']:.0f} "
        f"vs {results['arena']['end']:.0f} MB; synthesis time "
        f"{results['no-arena']['seconds'] / results['arena']['seconds']:.2f}x the baseline"
    )


if __name__ == "__main__":
    main()
