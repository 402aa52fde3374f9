"""Fakes for the pipeline: providers that subclass the real bases (so retries, timeouts and error
translation are the real ones) with scripted answers, delays and failures, and room outputs that
behave like the real ones (a playout clock, ``clear_queue``, the wire format of messages)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc

from agents.messages import OutboundMessage, parse_outbound
from agents.providers.base import (
    LLM,
    PCM,
    STT,
    TTS,
    VAD,
    CallPolicy,
    ChatRequest,
    EndOfTurnModel,
    LLMEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Transcript,
    VADStream,
)

FAST = CallPolicy(timeout=2.0, chunk_timeout=2.0, attempts=1, backoff=0.0)
SPEECH_LEVEL = 8000


# --- audio helpers ---------------------------------------------------------------------------


def frame16(level: int, ms: int = 10) -> rtc.AudioFrame:
    """A 16 kHz mono frame of constant ``level`` (FakeVAD hears speech when it is loud)."""
    n = 16 * ms
    pcm = np.full(n, level, dtype=np.int16)
    return rtc.AudioFrame(data=pcm.tobytes(), sample_rate=16000, num_channels=1,
                          samples_per_channel=n)


def speech(ms: int) -> list[rtc.AudioFrame]:
    return [frame16(SPEECH_LEVEL) for _ in range(ms // 10)]


def silence(ms: int) -> list[rtc.AudioFrame]:
    return [frame16(0) for _ in range(ms // 10)]


# --- providers -------------------------------------------------------------------------------


class FakeVADStream(VADStream):
    """Probability 1.0 for a loud 10 ms window, 0.0 for a quiet one."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._pending = np.zeros(0, dtype=np.int16)
        self.resets = 0

    @property
    def window_seconds(self) -> float:
        return self._window / 16000

    def push(self, pcm: PCM) -> list[float]:
        buf = np.concatenate((self._pending, pcm))
        probs: list[float] = []
        n = buf.size // self._window
        for i in range(n):
            win = buf[i * self._window : (i + 1) * self._window]
            probs.append(1.0 if float(np.abs(win.astype(np.int32)).mean()) > 1000 else 0.0)
        self._pending = buf[n * self._window :]
        return probs

    def reset(self) -> None:
        self.resets += 1
        self._pending = np.zeros(0, dtype=np.int16)


class FakeVAD(VAD):
    def __init__(self, *, name: str = "fake-vad", window: int = 160) -> None:
        super().__init__(name=name)
        self._window = window
        self.streams: list[FakeVADStream] = []

    def stream(self) -> VADStream:
        s = FakeVADStream(self._window)
        self.streams.append(s)
        return s


@dataclass(frozen=True)
class Delay:
    """In a FakeLLM script: wait this long before the next event."""

    seconds: float


class FakeSTT(STT):
    """Answers each call with the next scripted item: a text, or an exception to raise.

    ``interim`` marks the STT as cheap enough for interim transcripts; ``script`` (a function of
    the samples) replaces the queue when given."""

    def __init__(
        self,
        *,
        responses: Iterable[str | Exception] = (),
        default: str = "hello there",
        delay: float = 0.0,
        interim: bool = False,
        script: Callable[[PCM], str | Exception] | None = None,
        policy: CallPolicy | None = FAST,
    ) -> None:
        super().__init__(name="fake-stt", policy=policy)
        self.responses: deque[str | Exception] = deque(responses)
        self.default = default
        self.delay = delay
        self.supports_interim = interim
        self.script = script
        self.calls: list[int] = []
        self.languages: list[str | None] = []

    async def _transcribe_impl(self, pcm: PCM, *, language: str | None) -> Transcript:
        self.calls.append(int(pcm.size))
        self.languages.append(language)
        if self.delay:
            await asyncio.sleep(self.delay)
        item: str | Exception
        if self.script is not None:
            item = self.script(pcm)
        else:
            item = self.responses.popleft() if self.responses else self.default
        if isinstance(item, Exception):
            raise item
        return Transcript(text=item, confidence=0.9)


LLMScriptItem = str | ToolCall | Exception | Delay


class FakeLLM(LLM):
    """Each ``chat`` call plays the next script: text deltas, tool calls, delays, an exception.
    When the scripts run out it answers ``default``."""

    def __init__(
        self,
        *,
        scripts: Iterable[list[LLMScriptItem]] = (),
        default: str = "Okay.",
        vision: bool = False,
        policy: CallPolicy | None = FAST,
    ) -> None:
        super().__init__(name="fake-llm", policy=policy)
        self.scripts: deque[list[LLMScriptItem]] = deque(scripts)
        self.default = default
        self.supports_vision = vision
        self.requests: list[ChatRequest] = []
        self.cancelled = 0
        self.completed = 0

    async def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        self.requests.append(request)
        script = self.scripts.popleft() if self.scripts else [self.default]
        try:
            for item in script:
                if isinstance(item, Delay):
                    await asyncio.sleep(item.seconds)
                elif isinstance(item, Exception):
                    raise item
                elif isinstance(item, ToolCall):
                    yield ToolCallEvent(item)
                else:
                    yield TextDelta(item)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        self.completed += 1


class FakeTTS(TTS):
    """Makes ``seconds_per_char`` of audio per character in ``chunk_seconds`` chunks, after
    ``delay``. Texts in ``fail_on`` (or the next ``fail_times`` calls) raise ``error``."""

    def __init__(
        self,
        *,
        rate: int = 16000,
        seconds_per_char: float = 0.02,
        chunk_seconds: float = 0.1,
        delay: float = 0.0,
        fail_times: int = 0,
        error: Exception | None = None,
        policy: CallPolicy | None = FAST,
    ) -> None:
        super().__init__(name="fake-tts", policy=policy)
        self._rate = rate
        self.seconds_per_char = seconds_per_char
        self.chunk_seconds = chunk_seconds
        self.delay = delay
        self.fail_times = fail_times
        self.error = error
        self.texts: list[str] = []
        self.voices: list[str | None] = []

    @property
    def sample_rate(self) -> int:
        return self._rate

    def duration(self, text: str) -> float:
        return len(text) * self.seconds_per_char

    async def _synthesize_impl(self, text: str, *, voice: str | None) -> AsyncIterator[PCM]:
        self.texts.append(text)
        self.voices.append(voice)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_times > 0:
            self.fail_times -= 1
            assert self.error is not None
            raise self.error
        total = int(self.duration(text) * self._rate)
        step = max(1, int(self.chunk_seconds * self._rate))
        for start in range(0, total, step):
            n = min(step, total - start)
            yield np.full(n, 1000, dtype=np.int16)


# --- room outputs ----------------------------------------------------------------------------


class FakeAudioOutput:
    """An :class:`~agents.io.AudioOutput` with a playout clock the test drives.

    ``auto_play``: ``wait_for_playout`` plays everything queued at once (a fast room). Without it
    the test advances the clock with :meth:`advance`. ``max_queue`` seconds applies
    backpressure like the real source's queue."""

    def __init__(self, *, sample_rate: int = 16000, auto_play: bool = True,
                 max_queue: float = 120.0) -> None:
        self._rate = sample_rate
        self.auto_play = auto_play
        self.max_queue = max_queue
        self.frames: list[rtc.AudioFrame] = []
        self._queued = 0.0
        self.played = 0.0
        self.cleared = 0
        self.cleared_seconds = 0.0
        self._changed = asyncio.Event()

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def queued_duration(self) -> float:
        return self._queued

    @property
    def captured_seconds(self) -> float:
        return sum(f.duration for f in self.frames)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if frame.num_channels != 1 or frame.samples_per_channel <= 0:
            raise ValueError("mono frames with samples only")
        while self._queued + frame.duration > self.max_queue:
            if self.auto_play:  # a fast room: what is queued plays at once
                self.advance(self._queued)
                break
            self._changed.clear()
            await self._changed.wait()
        self.frames.append(frame)
        self._queued += frame.duration

    def clear_queue(self) -> None:
        self.cleared += 1
        self.cleared_seconds += self._queued
        self._queued = 0.0
        self._changed.set()

    def advance(self, seconds: float) -> None:
        step = min(seconds, self._queued)
        self._queued -= step
        self.played += step
        self._changed.set()

    def release(self) -> None:
        """Switch to ``auto_play`` and play everything queued (and anything still to come)."""
        self.auto_play = True
        self.advance(self._queued)

    async def wait_for_playout(self) -> None:
        while self._queued > 1e-9:
            if self.auto_play:
                self.advance(self._queued)
                break
            self._changed.clear()
            await self._changed.wait()


class FakeMessageOutput:
    """Records what clients would receive, after a round trip through the wire format."""

    def __init__(self, *, fail_types: Iterable[str] = ()) -> None:
        self.messages: list[OutboundMessage] = []
        self.fail_types = set(fail_types)
        self._got = asyncio.Event()

    async def publish(self, message: OutboundMessage) -> None:
        if message.type in self.fail_types:
            raise ConnectionError("publish failed")
        self.messages.append(parse_outbound(message.encode()))
        self._got.set()

    def of(self, type_: str) -> list[Any]:
        return [m for m in self.messages if m.type == type_]

    def statuses(self) -> list[str]:
        return [m.data.status for m in self.of("agent_status")]

    def transcripts(self, participant_id: str) -> list[Any]:
        return [
            m.data for m in self.of("transcript_chunk") if m.data.participant_id == participant_id
        ]

    async def wait_for(self, pred: Callable[[OutboundMessage], bool], within: float = 5.0) -> Any:
        """Wait until a message matching ``pred`` has arrived; return it."""

        async def _wait() -> Any:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                self._got.clear()
                await self._got.wait()

        return await asyncio.wait_for(_wait(), within)


class FakeEndOfTurn(EndOfTurnModel):
    """Answers each call with the next scripted probability (or raises a scripted error);
    ``default`` when the script is used up. Records the length of each utterance it saw."""

    def __init__(
        self, *, probabilities: Iterable[float | Exception] = (), default: float = 1.0,
        delay: float = 0.0,
    ) -> None:
        super().__init__(name="fake-eot", policy=FAST)
        self.script: deque[float | Exception] = deque(probabilities)
        self.default = default
        self.delay = delay
        self.calls: list[int] = []

    async def _completion_impl(self, pcm: PCM) -> float:
        self.calls.append(int(pcm.size))
        if self.delay:
            await asyncio.sleep(self.delay)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, Exception):
            raise item
        return item
