"""Real-time factor of the embedded Moonshine recogniser on this machine.

Utterances of about 2, 3, 5 and 10 s are spoken by the bundled Piper voice and resampled to
16 kHz; each is transcribed through ``MoonshineSTT.transcribe`` (worker thread included) once to
warm up, then ``repeats`` times. The baseline is the audio's own duration: real-time factor =
median transcription time / audio seconds (below 1 is faster than real time). The headline is
the worst of the lengths. With ``--shipped`` the same runs are repeated on the ``.ort`` files as
shipped (no up-front dequantization) for comparison.

    python bench/bench_stt.py [repeats=3] [--shipped]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livekit import rtc  # noqa: E402

from agents.providers.base import PCM  # noqa: E402
from agents.providers.moonshine_decoder import MoonshineRunner, model_dir  # noqa: E402
from agents.providers.moonshine_stt import MoonshineSTT  # noqa: E402
from agents.providers.piper_tts import PiperTTS  # noqa: E402

TEXTS = {
    "2s": "Yes, that works for me, thanks.",
    "3s": "Please book a table for four people tomorrow at noon, thank you.",
    "5s": (
        "I would like to book an appointment with the doctor next week, ideally on Tuesday "
        "in the morning."
    ),
    "10s": (
        "My name is Alex and I am calling about the parcel that was supposed to arrive on "
        "Monday. It still has not come, and the tracking page has not changed since Friday, so "
        "could you please check where it is?"
    ),
}


async def speak(tts: PiperTTS, text: str) -> PCM:
    pcm = np.concatenate([c async for c in tts.synthesize(text)])
    resampler = rtc.AudioResampler(tts.sample_rate, 16000, quality=rtc.AudioResamplerQuality.HIGH)
    frames = resampler.push(bytearray(pcm.tobytes())) + resampler.flush()
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


async def measure(stt: MoonshineSTT, clips: dict[str, PCM], repeats: int) -> dict[str, float]:
    rtf: dict[str, float] = {}
    for label, pcm in clips.items():
        seconds = pcm.size / 16000
        result = await stt.transcribe(pcm)  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            await stt.transcribe(pcm)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        rtf[label] = median / seconds
        print(
            f"  {label:>4}: audio {seconds:5.2f} s (baseline)  transcription {median:6.3f} s  "
            f"rtf {rtf[label]:.3f} x  words {len(result.text.split())}"
        )
    return rtf


async def main(repeats: int, shipped: bool) -> None:
    tts = PiperTTS()
    try:
        clips = {label: await speak(tts, text) for label, text in TEXTS.items()}
    finally:
        await tts.aclose()

    stt = MoonshineSTT(policy=None)
    started = time.perf_counter()
    await stt.prewarm()
    print(f"moonshine base, 1 thread: load {time.perf_counter() - started:.2f} s")
    try:
        rtf = await measure(stt, clips, repeats)
    finally:
        await stt.aclose()

    if shipped:
        slow = MoonshineSTT(name="moonshine-shipped")
        runner = await asyncio.to_thread(MoonshineRunner, model_dir("base"), optimise=False)
        slow._runner = runner  # bench only: the shipped .ort files, no up-front dequantization
        print("shipped .ort files, 1 thread:")
        try:
            slow_rtf = await measure(slow, clips, repeats)
        finally:
            await slow.aclose()
        worst = max(slow_rtf.values()) / max(rtf.values())
        print(f"speed-up of the dequantized model over the shipped files: {worst:.1f} x")

    print(f"stt_rtf: {max(rtf.values()):.3f} x (target < 0.3)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 3, "--shipped" in sys.argv))
