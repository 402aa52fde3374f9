"""One small interface per provider kind. The public method of each base class owns timeouts,
retries and error translation; a vendor implements only the private ``_..._impl`` hook, so adding
a vendor is one new file.

Audio here is numpy ``int16`` mono PCM. Speech recognition takes 16 kHz; speech synthesis yields
chunks at ``TTS.sample_rate``.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import structlog

from agents.providers.errors import ProviderError, ProviderTimeout

log = structlog.get_logger("agents.providers")

PCM = npt.NDArray[np.int16]
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class CallPolicy:
    """Deadlines and retries a provider's public method applies to every call."""

    timeout: float = 10.0
    """Per attempt: the whole call, or for a stream the wait for its first item."""
    chunk_timeout: float = 10.0
    """For streams: the longest wait between two items once the stream has started."""
    attempts: int = 2
    """Total attempts for retryable errors. A stream is retried only before its first item."""
    backoff: float = 0.2
    """Seconds before the second attempt, doubled for each further one."""


async def call_with_retries(
    fn: Callable[[], Awaitable[T]], *, policy: CallPolicy, provider: str, what: str
) -> T:
    """Run ``fn`` under ``policy``: per-attempt timeout, retry retryable errors with backoff."""
    attempt = 0
    while True:
        attempt += 1
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the inner call finishes (CPython gh-86296).
            async with asyncio.timeout(policy.timeout):
                return await fn()
        except TimeoutError as e:
            err: ProviderError = ProviderTimeout(
                f"{what} timed out after {policy.timeout:.1f}s", provider=provider
            )
            err.__cause__ = e
        except ProviderError as e:
            err = e
        if not err.retryable or attempt >= policy.attempts:
            raise err
        log.warning(
            "provider_retry", provider=provider, what=what, attempt=attempt, error=str(err)
        )
        await asyncio.sleep(policy.backoff * (2 ** (attempt - 1)))


async def stream_with_retries(
    open_stream: Callable[[], AsyncIterator[T]], *, policy: CallPolicy, provider: str, what: str
) -> AsyncIterator[T]:
    """Iterate a stream under ``policy``: first-item and between-item deadlines; retryable
    errors before the first item start the stream over; after it, errors propagate."""
    attempt = 0
    while True:
        attempt += 1
        stream = open_stream()
        started = False
        try:
            while True:
                deadline = policy.chunk_timeout if started else policy.timeout
                try:
                    async with asyncio.timeout(deadline):
                        item = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError as e:
                    phase = "next chunk" if started else "first chunk"
                    raise ProviderTimeout(
                        f"{what}: no {phase} within {deadline:.1f}s", provider=provider
                    ) from e
                started = True
                yield item
        except ProviderError as err:
            if started or not err.retryable or attempt >= policy.attempts:
                raise
            log.warning(
                "provider_retry", provider=provider, what=what, attempt=attempt, error=str(err)
            )
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await asyncio.sleep(policy.backoff * (2 ** (attempt - 1)))


class Provider(ABC):  # noqa: B024 (shared state, no abstract hook of its own)
    """Common to every provider: a name for logs and metrics, a call policy, ``aclose``."""

    kind: str = "provider"

    def __init__(self, *, name: str, policy: CallPolicy | None = None) -> None:
        self.name = name
        self.policy = policy or CallPolicy()

    async def prewarm(self) -> None:  # noqa: B027 (optional hook)
        """Load models or open connections now, so the first call does not pay for it."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release clients and sessions. Idempotent."""


# --- voice activity detection ----------------------------------------------------------------


class VADStream(ABC):
    """Per-speaker, stateful. ``push`` is synchronous: it runs on the audio hot path."""

    @abstractmethod
    def push(self, pcm: PCM) -> list[float]:
        """Feed 16 kHz samples of any length; return the speech probability of every analysis
        window completed by them (possibly none), oldest first."""

    @property
    @abstractmethod
    def window_seconds(self) -> float:
        """Duration of one analysis window."""

    def reset(self) -> None:  # noqa: B027 (optional hook)
        """Forget the model state (after a long silence or a speaker change)."""


class VAD(Provider):
    kind = "vad"
    sample_rate = 16000

    @abstractmethod
    def stream(self) -> VADStream:
        """A new stream for one speaker."""


# --- end of turn ------------------------------------------------------------------------------


class EndOfTurnModel(Provider):
    """Judges from the audio of an utterance whether the speaker has finished their turn."""

    kind = "turn"

    async def completion(self, pcm: PCM) -> float:
        """Probability (0..1) that ``pcm`` (16 kHz mono int16, ending now) is a complete turn.
        Raises :class:`ProviderError` (:class:`ProviderTimeout` past ``policy.timeout``)."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ProviderError("expected 16 kHz mono int16 PCM", provider=self.name)
        try:
            async with asyncio.timeout(self.policy.timeout):
                p = await self._completion_impl(pcm)
        except TimeoutError as e:
            raise ProviderTimeout(
                f"no end-of-turn answer within {self.policy.timeout:g}s", provider=self.name
            ) from e
        return min(1.0, max(0.0, float(p)))

    @abstractmethod
    async def _completion_impl(self, pcm: PCM) -> float: ...


# --- speech to text --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Transcript:
    text: str
    confidence: float = 1.0
    language: str | None = None
    degenerate: bool = False
    """The engine ran away (looped, or used its whole token budget): ``text`` is what came
    before the loop. Interim transcripts that are degenerate are not published."""


class STT(Provider):
    """Buffered speech recognition: one utterance in, its text out."""

    kind = "stt"
    sample_rate = 16000
    supports_interim: bool = False
    """Cheap enough to re-run on the growing utterance for interim transcripts."""

    async def transcribe(self, pcm: PCM, *, language: str | None = None) -> Transcript:
        """Transcribe ``pcm`` (16 kHz mono int16) under the call policy."""
        return await call_with_retries(
            lambda: self._transcribe_impl(pcm, language=language),
            policy=self.policy, provider=self.name, what="transcription",
        )

    @abstractmethod
    async def _transcribe_impl(self, pcm: PCM, *, language: str | None) -> Transcript: ...


# --- language model --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text exactly as the model produced it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ImagePart:
    """An image attached to a message: JPEG bytes, and where it came from."""

    jpeg: bytes
    width: int
    height: int
    source: str = "camera"


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """For ``role="tool"``: the call this message answers."""
    images: tuple[ImagePart, ...] = ()
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """A complete tool call: vendors assemble streamed argument fragments before yielding."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


LLMEvent = TextDelta | ToolCallEvent | Usage


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    messages: list[ChatMessage]
    tools: list[ToolSpec] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None


class LLM(Provider):
    """A chat model that streams text and tool calls."""

    kind = "llm"
    supports_vision: bool = False

    def chat(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        """Stream the model's answer under the call policy (retried only before output)."""
        return stream_with_retries(
            lambda: self._chat_impl(request),
            policy=self.policy, provider=self.name, what="chat",
        )

    @abstractmethod
    def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]: ...


# --- text to speech --------------------------------------------------------------------------


class TTS(Provider):
    """Speech synthesis that streams int16 mono PCM at ``sample_rate``."""

    kind = "tts"

    @property
    @abstractmethod
    def sample_rate(self) -> int: ...

    def accepts_voice(self, voice: str) -> bool:
        """Whether ``voice`` names a voice this engine has (checked when a job's persona picks
        one, so a wrong name falls back to the default voice instead of failing every line).
        Engines that cannot tell locally accept any name."""
        return True

    def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[PCM]:
        """Stream the speech for ``text`` under the call policy (retried only before audio)."""
        return stream_with_retries(
            lambda: self._synthesize_impl(text, voice=voice),
            policy=self.policy, provider=self.name, what="synthesis",
        )

    @abstractmethod
    def _synthesize_impl(self, text: str, *, voice: str | None) -> AsyncIterator[PCM]: ...


def monotonic_ms() -> float:
    return time.perf_counter() * 1000.0
