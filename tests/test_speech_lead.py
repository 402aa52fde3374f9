"""An answer's first sound is handed to the room at once: the silence speech engines put before
each synthesis is dropped at the start of an answer (and only there)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from fakes import FAST, FakeAudioOutput

from agents.pipeline.speech import SpeechOut
from agents.providers.base import PCM, TTS


class LeadingSilenceTTS(TTS):
    """60 ms of near-silence, then 200 ms of tone, per text (like Piper's synthesis)."""

    def __init__(self) -> None:
        super().__init__(name="lead-tts", policy=FAST)

    @property
    def sample_rate(self) -> int:
        return 16000

    async def _synthesize_impl(self, text: str, *, voice: str | None) -> AsyncIterator[PCM]:
        yield np.full(480, 3, dtype=np.int16)
        yield np.full(480, 3, dtype=np.int16)
        yield np.full(3200, 8000, dtype=np.int16)
        await asyncio.sleep(0)


async def test_leading_silence_of_the_first_sentence_only_is_dropped() -> None:
    audio = FakeAudioOutput()
    out = SpeechOut(tts=LeadingSilenceTTS(), audio=audio)
    await out.speak("First.")
    first = np.frombuffer(audio.frames[0].data, dtype=np.int16)
    assert (first == 8000).all()  # the first frame handed over is sound
    assert abs(audio.captured_seconds - 0.2) < 0.021
    await out.speak("Second.")  # between sentences the engine's pause is kept
    assert abs(audio.captured_seconds - 0.2 - 0.26) < 0.021
