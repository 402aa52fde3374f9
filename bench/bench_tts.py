"""First audio of the embedded Piper voice: streamed windows against whole sentences.

Each text is synthesised through ``PiperTTS.synthesize`` (worker thread included) by the
default provider (``streaming: true``: the vocoder runs on windows of the sentence's frames,
:mod:`agents.providers.piper_stream`) and, in the same run and alternating which goes first, by
the baseline ``streaming: false`` (Piper's own whole-sentence synthesis). Both without the
voice's random variation, once to warm up and then ``repeats`` times.

Printed per text: the audio's length, time to the first audible chunk (one with sound left after
the leading silence the service trims, ``agents.pipeline.speech``: a sentence may begin with a
whole window of silence) and to the last chunk (median), for both.
The headline is the median over texts of the first-audio ratio, and the cost of the windows
(total synthesis time ratio). With ``--busy N``, N processes spin on the cores meanwhile (the
service's other work: a turn model, the SDK, other calls), bounded by the run.

    python bench/bench_tts.py [repeats=5] [--busy N]
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.pipeline.speech import lstrip_silence  # noqa: E402
from agents.providers.piper_tts import PiperTTS  # noqa: E402

TEXTS = [
    "Sure,",
    "I'm a scripted offline responder,",  # the scripted responder's first clause
    "Thanks for calling, how can I help you today?",
    "I can book that for you,",
    "Let me check tomorrow's schedule for the downtown office,",
    "Your parcel left the depot this morning and should arrive before six this evening.",
]


async def once(tts: PiperTTS, text: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = 0.0
    samples = 0
    async for chunk in tts.synthesize(text):
        if not first and lstrip_silence(chunk).size:
            first = time.perf_counter() - started
        samples += chunk.size
    return first, time.perf_counter() - started, samples


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def main(repeats: int, busy: int) -> None:
    variants = {
        "streaming": PiperTTS(noise_scale=0.0, noise_w_scale=0.0),
        "whole": PiperTTS(name="piper-whole", noise_scale=0.0, noise_w_scale=0.0,
                          streaming=False),
    }
    spinners = [multiprocessing.Process(target=spin, args=(600.0,), daemon=True)
                for _ in range(busy)]
    try:
        for label, tts in variants.items():
            started = time.perf_counter()
            await tts.prewarm()
            print(f"{label}: load {time.perf_counter() - started:.2f} s")
        for p in spinners:
            p.start()
        if busy:
            print(f"{busy} busy process(es) spinning meanwhile")
        first: dict[str, dict[str, list[float]]] = {v: {t: [] for t in TEXTS} for v in variants}
        total: dict[str, dict[str, list[float]]] = {v: {t: [] for t in TEXTS} for v in variants}
        length: dict[str, float] = {}
        for text in TEXTS:
            for tts in variants.values():
                await once(tts, text)  # warm up this length's shapes
            for r in range(repeats):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for label in order:
                    f, t, n = await once(variants[label], text)
                    first[label][text].append(f)
                    total[label][text].append(t)
                    length[text] = n / variants[label].sample_rate
        print(f"{'text':<48} {'audio':>6}  first audio: streaming / whole   all of it: "
              "streaming / whole")
        ratios, costs = [], []
        for text in TEXTS:
            fs, fw = (statistics.median(first[v][text]) * 1000 for v in variants)
            ts, tw = (statistics.median(total[v][text]) * 1000 for v in variants)
            ratios.append(fw / fs)
            costs.append(ts / tw)
            print(f"{text[:48]:<48} {length[text]:5.2f}s  {fs:6.0f} / {fw:4.0f} ms "
                  f"({fw / fs:.2f} x)   {ts:6.0f} / {tw:4.0f} ms")
    finally:
        for p in spinners:
            p.terminate()
            p.join(timeout=5)
        for tts in variants.values():
            await tts.aclose()
    print(f"tts_first_audio: streamed windows {statistics.median(ratios):.2f} x sooner than "
          f"whole sentences (median over {len(TEXTS)} texts; {min(ratios):.2f}-"
          f"{max(ratios):.2f} x); whole synthesis {statistics.median(costs):.2f} x the time")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repeats", nargs="?", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0, help="processes spinning meanwhile")
    ns = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(ns.repeats, ns.busy))
