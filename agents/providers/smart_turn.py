"""End-of-turn detection with Smart Turn v3.2 (BSD-2-Clause), on our shared onnxruntime.

Smart Turn listens to the last 8 s of a speaker's utterance (audio only, no transcript) and says
how likely it is that the speaker has finished their turn, from intonation and the words'
rhythm: "my number is, um..." scores low, "that's all, thanks." high. The pipeline asks it at a
short pause (``turn.pause_ms``), so complete turns end after ~200 ms of silence instead of the
silence window, and incomplete ones wait longer (``turn.max_silence_ms``).

The model file ships inside the ``pipecat-ai`` wheel; ``scripts/fetch_smart_turn.py`` (run by
``make install`` and the Dockerfile) extracts it and its licence into ``agents/providers/models``
without installing pipecat. Features are ours (:mod:`agents.providers.log_mel`). One inference
costs about 70 ms of one core plus ~25 ms of features, in this provider's worker threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agents.providers.base import PCM, CallPolicy, EndOfTurnModel
from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.providers.log_mel import fit_window, log_mel
from agents.providers.onnx import load_session

log = structlog.get_logger("agents.providers.smart_turn")

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"


def bundled_model_path() -> Path:
    """Where ``scripts/fetch_smart_turn.py`` puts the model (package data of this package)."""
    return Path(__file__).resolve().parent / "models" / MODEL_FILE


class SmartTurn(EndOfTurnModel):
    """The Smart Turn model: :meth:`completion` is the probability that a turn is complete."""

    def __init__(
        self, *, name: str = "smart-turn", model_path: str | Path | None = None,
        threads: int = 1, policy: CallPolicy | None = None,
    ) -> None:
        super().__init__(name=name, policy=policy)
        path = Path(model_path).expanduser() if model_path else bundled_model_path()
        if not path.is_file():
            raise ProviderUnavailable(
                f"Smart Turn model not found at {path} (turn.detector is smart-turn): run "
                "`make install`, which fetches it (scripts/fetch_smart_turn.py)",
                provider=name,
            )
        self.path = path
        self.threads = threads
        self._session: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix=f"eot-{name}"
        )
        self._closed = False

    def load(self) -> Any:
        """The shared session (blocking: loads it on first use)."""
        if self._session is None:
            try:
                self._session = load_session(self.path, threads=self.threads)
            except ProviderUnavailable as e:
                raise ProviderUnavailable(e.message, provider=self.name) from e
        return self._session

    async def prewarm(self) -> None:
        """Load the model and run it once (the first run allocates its buffers)."""
        await self.completion(np.zeros(1600, dtype=np.int16))

    async def _completion_impl(self, pcm: PCM) -> float:
        if self._closed:
            raise ProviderError("end-of-turn provider is closed", provider=self.name)
        return await asyncio.wrap_future(self._executor.submit(self._score, pcm))

    def _score(self, pcm: PCM) -> float:
        started = time.perf_counter()
        session = self.load()
        features = log_mel(fit_window(pcm))[np.newaxis]
        try:
            out = session.run(None, {"input_features": features})
        except Exception as e:  # onnxruntime raises its own unexported types
            raise ProviderError(
                f"end-of-turn model failed: {type(e).__name__}: {e}", provider=self.name
            ) from e
        p = float(np.clip(np.asarray(out[0], dtype=np.float32).reshape(-1)[0], 0.0, 1.0))
        log.debug("end_of_turn_scored", provider=self.name, probability=round(p, 3),
                  audio_s=round(pcm.size / 16000, 2),
                  elapsed_ms=round((time.perf_counter() - started) * 1000))
        return p

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._session = None
