"""Piper's voice model in two halves, so a sentence's speech streams out while it is being made.

A Piper voice is one VITS graph. Its text encoder, duration predictor and flow turn a
sentence's phonemes into latent frames (one per ``hop_length`` samples: 11.6 ms at 22.05 kHz);
its HiFi-GAN vocoder turns the frames into samples. The vocoder is most of the time (for
"I'm a scripted offline responder,", 2.2 s of speech: the frames took 45 ms of the whole
graph's 160 ms on one core, measured once), and it is convolutional: a sample depends only on
frames near it. So:

- at load the graph is cut in two in memory (``onnx.utils.Extractor``) at the vocoder's input,
  the first input of node ``/dec/conv_pre/Conv`` in Piper's export. Both halves are onnxruntime
  sessions shared by every provider on the same voice file and thread count;
- a sentence's frames are made at once (the duration predictor needs the whole sentence);
- then the vocoder runs on :class:`Windows` of them: a short first one (24 frames, 0.28 s of
  speech), then each twice as long, up to 160 frames. Each window is run with ``context``
  frames of its neighbours on both sides, and their samples are cut away again. With the default
  10 frames the windows' samples are those of the whole sentence to within 1e-4 (tested); with
  12, 3e-7, and with 8, -78 dB (measured once).

The first audio of a sentence is then ready after its frames and one short window instead of
after the whole sentence (``bench/bench_tts.py``, first audible chunk, one core, quiet: 2.14x
sooner over six texts, the whole sentence 1.1-1.2x the time). That clause begins with 0.28 s of
silence, its whole first window, which the speech path trims: its first sound is the second
window's. While no window has been audible yet (none louder than :data:`QUIET_LEVEL`), the next
is as short as the first instead of twice as long, so that first sound too is vocoded in a short
window (figures in ``bench_tts.py``'s docstring and the README).

Loudness: Piper scales each sentence to full peak (``normalize_audio``), which needs the whole
sentence. Streaming uses one gain per voice instead, measured at load on
:data:`CALIBRATION` (:meth:`StreamingVoice.calibrate`; it also warms both sessions). Sentences
then keep their relative loudness, and the loudest calibration sentence peaks at
:data:`HEADROOM` of full scale.

A voice whose graph has no such node, or whose vocoder's output is not ``hop_length`` samples per
frame, is not split: :func:`split_voice` answers None and the provider synthesises whole
sentences as Piper does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from agents.providers.onnx import new_session, shared_build

log = structlog.get_logger("agents.providers.piper_stream")

VOCODER_NODE = "/dec/conv_pre/Conv"
"""The vocoder's first node in Piper's ONNX export; its first input is the latent frames."""

CALIBRATION = "Hello. Yes. Thank you! Goodbye."
"""Sentences the streaming gain is measured on (varied lengths and intonation)."""

HEADROOM = 0.9
"""The loudest calibration sentence's peak, as a share of full scale, after the gain."""

QUIET_LEVEL = 1e-3
"""The vocoder's output (before the gain) no louder than this is silence (-60 dB; the speech
path trims an answer's leading samples below about -50 dBFS)."""

Float = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Windows:
    """How a sentence's frames are cut for the vocoder."""

    first: int = 24
    """Frames in the first window (its samples are the sentence's first audio)."""
    largest: int = 160
    """Each later window is twice the one before, up to this many frames."""
    context: int = 10
    """Frames of each neighbour run with a window, whose samples are then cut away."""
    quiet_level: float = QUIET_LEVEL
    """A window none of whose samples is louder than this is silent (see :meth:`spans`)."""

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.largest:
            raise ValueError("windows: need 1 <= first <= largest")
        if self.context < 0:
            raise ValueError("windows: context must be >= 0")

    def spans(
        self, frames: int, quiet: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of each window over ``frames`` frames, in order, covering them;
        ``quiet()``, asked after each window, tells whether nothing audible has come yet (see
        :meth:`next_size`)."""
        start, size = 0, self.first
        while start < frames:
            end = min(frames, start + size)
            yield start, end
            start, size = end, self.next_size(size, quiet=quiet())

    def next_size(self, size: int, *, quiet: bool = False) -> int:
        """The window after one of ``size`` frames: twice as long, up to ``largest``; but
        ``first`` again while nothing audible has come yet (``quiet``), so that a sentence
        that begins with a pause as long as the first window has its first sound vocoded in a
        short window too."""
        return self.first if quiet else min(self.largest, size * 2)


class VoiceHalves:
    """One voice file's two sessions: phonemes to frames, and frames to samples."""

    def __init__(self, *, frames: Any, vocoder: Any, latent: str, hop: int) -> None:
        self._frames = frames
        self._vocoder = vocoder
        self._latent = latent
        self._frame_inputs = {i.name for i in frames.get_inputs()}
        self._vocoder_inputs = {i.name for i in vocoder.get_inputs()} - {latent}
        self.hop = hop

    def frames(self, inputs: dict[str, np.ndarray]) -> Float:
        """The sentence's latent frames, ``(1, channels, frames)``, for the whole graph's inputs
        (``input``, ``input_lengths``, ``scales`` and, for several speakers, ``sid``)."""
        feed = {k: v for k, v in inputs.items() if k in self._frame_inputs}
        out: Float = self._frames.run(None, feed)[0]
        return out

    def samples(
        self, latent: Float, inputs: dict[str, np.ndarray], windows: Windows
    ) -> Iterator[Float]:
        """The samples of ``latent``'s frames, one float array per window, in order."""
        extra = {k: v for k, v in inputs.items() if k in self._vocoder_inputs}
        total = latent.shape[2]
        hop, ctx = self.hop, windows.context
        heard = False

        def quiet() -> bool:
            return not heard

        for start, end in windows.spans(total, quiet):
            lo, hi = max(0, start - ctx), min(total, end + ctx)
            feed = {self._latent: np.ascontiguousarray(latent[:, :, lo:hi]), **extra}
            out = self._vocoder.run(None, feed)[0].reshape(-1)
            if out.size != (hi - lo) * hop:
                raise ValueError(
                    f"the vocoder made {out.size} samples for {hi - lo} frames, "
                    f"not {hop} per frame"
                )
            skip = (start - lo) * hop
            window = out[skip : skip + (end - start) * hop]
            heard = heard or float(np.abs(window).max(initial=0.0)) > windows.quiet_level
            yield window


def _split(model_path: Path, threads: int, hop: int) -> VoiceHalves | None:
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(model_path))
    node = next((n for n in model.graph.node if n.name == VOCODER_NODE), None)
    if node is None or not node.input:
        return None
    latent = node.input[0]
    names = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output][:1]
    extractor = Extractor(model)
    front = extractor.extract_model(names, [latent])
    # A voice of several speakers conditions the vocoder on the speaker too.
    back = extractor.extract_model([latent] + [n for n in names if n == "sid"], outputs)
    del model, extractor
    what = model_path.name
    return VoiceHalves(
        frames=new_session(front.SerializeToString(), threads=threads, what=f"{what} (frames)"),
        vocoder=new_session(back.SerializeToString(), threads=threads, what=f"{what} (vocoder)"),
        latent=latent,
        hop=hop,
    )


def split_voice(model_path: Path, *, threads: int, hop: int) -> VoiceHalves | None:
    """The shared halves of the voice at ``model_path`` (built on first use: about half a
    second), or None when its graph is not Piper's usual export. Raises
    :class:`~agents.providers.errors.ProviderUnavailable` when onnxruntime cannot load a half.
    """
    resolved = model_path.expanduser().resolve()
    return shared_build(
        f"{resolved}#halves@{hop}", threads, lambda: _split(resolved, threads, hop)
    )


class StreamingVoice:
    """A Piper voice's sentences as int16 windows of samples, as they are made."""

    def __init__(self, voice: Any, halves: VoiceHalves, windows: Windows | None = None) -> None:
        self._voice = voice  # a piper.PiperVoice: its phonemiser and config
        self._halves = halves
        self.windows = windows or Windows()
        self.gain = 1.0

    def calibrate(self) -> float:
        """Measure the gain on :data:`CALIBRATION` (noise off, so it is the same every time)
        and keep it. Raises ``ValueError`` when the vocoder's output has the wrong length."""
        from piper import SynthesisConfig

        still = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        peak = max((float(np.abs(w).max(initial=0.0)) for w in self._windows(CALIBRATION, still)),
                   default=0.0)
        self.gain = HEADROOM / peak if peak > 1e-3 else 1.0
        return self.gain

    def synthesize(self, text: str, config: Any) -> Generator[npt.NDArray[np.int16]]:
        """Each sentence of ``text``, window by window (``config``: a ``SynthesisConfig``)."""
        for window in self._windows(text, config):
            yield (np.clip(window * self.gain, -1.0, 1.0) * 32767.0).astype(np.int16)

    def _windows(self, text: str, config: Any) -> Generator[Float]:
        """The vocoder's float samples of each sentence of ``text``, window by window."""
        for inputs in self._sentences(text, config):
            latent = self._halves.frames(inputs)
            yield from self._halves.samples(latent, inputs, self.windows)

    def _sentences(self, text: str, config: Any) -> Iterator[dict[str, np.ndarray]]:
        """The whole graph's inputs for each sentence of ``text``, as Piper makes them."""
        voice = self._voice
        vc = voice.config
        for phonemes in voice.phonemize(text):
            if not phonemes:
                continue
            ids = voice.phonemes_to_ids(phonemes)
            noise = vc.noise_scale if config.noise_scale is None else config.noise_scale
            length = vc.length_scale if config.length_scale is None else config.length_scale
            noise_w = vc.noise_w_scale if config.noise_w_scale is None else config.noise_w_scale
            inputs: dict[str, np.ndarray] = {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": np.array([noise, length, noise_w], dtype=np.float32),
            }
            if vc.num_speakers > 1:
                sid = vc.default_speaker_id if config.speaker_id is None else config.speaker_id
                inputs["sid"] = np.array([sid or 0], dtype=np.int64)
            yield inputs
