"""Real-time factor and accuracy of the embedded Moonshine recogniser on this machine.

Utterances of about 2, 3, 5 and 10 s are spoken by the bundled Piper voice and resampled to
16 kHz; each is transcribed through ``MoonshineSTT.transcribe`` (worker thread included) once to
warm up, then ``repeats`` times, by the default model (the decoder's matrix products in int8)
and, in the same run, by the baseline: the same model with a float32 decoder (``int8: false``).
Real-time factor = median transcription time / audio seconds (below 1 is faster than real time);
the headline is the worst of the lengths.

Accuracy: a corpus of everyday caller sentences spoken by Piper without its random variation
and, when ``espeak-ng`` and ``sox`` are installed (``make bench-sounds``), by three espeak-ng
voices; both models transcribe every clip. Printed: word error rate of each against the text
(``jiwer``, after lower-casing and dropping punctuation) and how many transcripts differ between
the two. With ``--shipped`` the timing is also run on the ``.ort`` files as shipped (no
up-front dequantization).

    python bench/bench_stt.py [repeats=3] [--shipped]
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_barge_in_noise's corpus tools

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


CORPUS = [
    "Hi, I'm calling about my order.",
    "Yes, that is correct.",
    "No, that's not what I asked for.",
    "I would like to book a table for two people tonight.",
    "Could you tell me when the store opens on Sunday?",
    "So the problem is that the printer keeps jamming every morning.",
    "Actually, make that three people, and add a vegetarian option.",
    "Can I change my delivery address, please?",
    "My name is Sarah Johnson and I live on Baker Street.",
    "The package was supposed to arrive last Thursday.",
    "I need to cancel my appointment for tomorrow afternoon.",
    "Is there someone who speaks to me about my bill?",
    "Please send the invoice to my email address.",
    "Wait, hold on a second.",
    "That sounds great, thank you very much.",
    "How long will the repair take?",
    "I forgot my password and cannot log in.",
    "What time does the last train leave for the airport?",
    "My internet connection drops every few minutes.",
    "Could you repeat that more slowly, please?",
]


def words(text: str) -> str:
    import jiwer

    norm = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(),
                          jiwer.RemoveMultipleSpaces(), jiwer.Strip()])
    return str(norm(text))


async def accuracy(models: dict[str, MoonshineSTT]) -> dict[str, float]:
    """Word error rate per model over the corpus; prints how many transcripts differ."""
    import jiwer
    from bench_barge_in_noise import ESPEAK_VOICES, speech_clips

    voices = shutil.which("espeak-ng") and shutil.which("sox")
    if voices:
        rendered = await asyncio.to_thread(speech_clips, CORPUS, recorded=False)
        clips = {k: (v * 32768.0).astype(np.int16) for k, v in rendered.items()}
    else:
        print("  (espeak-ng and sox not installed, `make bench-sounds`: Piper's voice only)")
        tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, streaming=False)
        try:
            clips = {f"piper: {t}": await speak(tts, t) for t in CORPUS}
        finally:
            await tts.aclose()
    said = {name: name.split(": ", 1)[1] for name in clips}
    heard: dict[str, dict[str, str]] = {m: {} for m in models}
    for name, pcm in clips.items():
        for label, stt in models.items():
            heard[label][name] = (await stt.transcribe(pcm)).text
    wer: dict[str, float] = {}
    for label in models:
        refs = [words(said[n]) for n in clips]
        wer[label] = float(jiwer.wer(refs, [words(heard[label][n]) for n in clips]))
    first, second = list(models)
    differ = [n for n in clips if words(heard[first][n]) != words(heard[second][n])]
    groups = ["piper", *(f"espeak {v}" for v in ESPEAK_VOICES)] if voices else ["piper"]
    print(f"  {len(clips)} clips ({len(CORPUS)} sentences; {', '.join(groups)})")
    for label in models:
        print(f"  {label:<8} word error rate {wer[label]:.3f}")
    print(f"  transcripts that differ between {first} and {second}: {len(differ)} of {len(clips)}")
    for n in differ:
        print(f"    {n}\n      {first}: {heard[first][n]}\n      {second}: {heard[second][n]}")
    return wer


async def main(repeats: int, shipped: bool) -> None:
    tts = PiperTTS(streaming=False)
    try:
        clips = {label: await speak(tts, text) for label, text in TEXTS.items()}
    finally:
        await tts.aclose()

    models = {"int8": MoonshineSTT(policy=None),
              "float32": MoonshineSTT(name="moonshine-float32", int8=False, policy=None)}
    try:
        for label, stt in models.items():
            started = time.perf_counter()
            await stt.prewarm()
            print(f"moonshine base, {label} decoder, 1 thread: load "
                  f"{time.perf_counter() - started:.2f} s")
        rtf = {}
        for label, stt in models.items():
            print(f"{label} decoder{' (baseline)' if label == 'float32' else ''}:")
            rtf[label] = await measure(stt, clips, repeats)
        faster = [rtf["float32"][k] / rtf["int8"][k] for k in TEXTS]
        print("accuracy:")
        wer = await accuracy(models)
    finally:
        for stt in models.values():
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
        worst = max(slow_rtf.values()) / max(rtf["int8"].values())
        print(f"speed-up of the int8 model over the shipped files: {worst:.1f} x")

    print(f"stt_rtf: {max(rtf['int8'].values()):.3f} x (target < 0.3); int8 decoder "
          f"{min(faster):.2f}-{max(faster):.2f} x faster than float32 (by length), word error "
          f"rate {wer['int8']:.3f} vs {wer['float32']:.3f}")


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 3, "--shipped" in sys.argv))
