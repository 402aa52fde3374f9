"""From model tokens to audio in the room.

:class:`SentenceSplitter` cuts streamed text into sentence-sized pieces as soon as each one is
complete. :class:`SpeechOut` synthesises one piece at a time, streams the audio into the room's
:class:`~agents.io.AudioOutput` in 20 ms frames as it is made, and keeps track of what the caller
has actually heard (by playout position), so an interrupted answer can be cut at the right word.
A turn's speech can also be paused (the caller may be interrupting) and resumed where the caller
stopped hearing it (they were not: a false interruption).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc

from agents.io import AudioOutput
from agents.pipeline.aio import cancel_and_wait
from agents.providers.base import PCM, TTS, monotonic_ms

FIRST_CLAUSE_CHARS = 24
"""An answer's first piece may end at a clause once it is this long (see SentenceSplitter)."""

_END = re.compile(r"[.!?…。！？]+[\"')\]]*\s|\n+")
_SOFT = re.compile(r"[,;:—–]\s")


class SentenceSplitter:
    """Accumulates streamed text and hands out complete sentences.

    A sentence ends at terminal punctuation followed by whitespace, or at a line break; a piece
    shorter than ``min_chars`` waits for the next one (so "Hi." and "Dr." do not go alone); text
    longer than ``max_chars`` with no sentence end is cut at a comma or a space.

    The first piece of an answer may also end at a comma, semicolon or colon once it has
    ``first_min_chars``: speech can start on a short clause instead of waiting for a long
    sentence to be synthesised whole (0 turns this off).
    """

    def __init__(
        self, *, min_chars: int = 12, max_chars: int = 220,
        first_min_chars: int = FIRST_CLAUSE_CHARS,
    ) -> None:
        self._buf = ""
        self._min = min_chars
        self._max = max_chars
        self._first_min = first_min_chars
        self._emitted = False

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        start = 0
        if not self._emitted and self._first_min:
            for m in _SOFT.finditer(self._buf):
                if m.end() >= self._first_min:
                    out.append(self._buf[: m.end()].strip())
                    start = m.end()
                    break
            end = _END.search(self._buf)
            if out and end is not None and end.end() <= start:
                out, start = [], 0  # a whole sentence came first: the normal rule applies
        for m in _END.finditer(self._buf, start):
            piece = self._buf[start : m.end()].strip()
            if len(piece) < self._min:
                continue
            out.append(piece)
            start = m.end()
        self._buf = self._buf[start:]
        self._emitted = self._emitted or bool(out)
        while len(self._buf) > self._max:
            cut = self._cut_point(self._buf[: self._max])
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                out.append(piece)
        return out

    def flush(self) -> list[str]:
        piece, self._buf = self._buf.strip(), ""
        return [piece] if piece else []

    @staticmethod
    def _cut_point(text: str) -> int:
        soft = list(_SOFT.finditer(text))
        if soft:
            return soft[-1].end()
        space = text.rfind(" ")
        return space + 1 if space > 0 else len(text)


Chunks = asyncio.Queue[PCM | Exception | None]
Held = tuple[Chunks, "asyncio.Future[Any]"]
"""Audio synthesised ahead (a speculative answer's first piece) and the work making it."""
_LEAD_LEVEL = 100
"""Samples quieter than this (about -50 dBFS) before an answer's first sound are dropped: speech
engines start each synthesis with 40-60 ms of silence (Piper some sentences with 250 ms, "I'm a
scripted offline responder,"), which the caller would wait through."""


def lstrip_silence(pcm: PCM) -> PCM:
    """``pcm`` from its first sample louder than the lead level on (empty if none is)."""
    loud = np.flatnonzero(np.abs(pcm) > _LEAD_LEVEL)
    return pcm[loud[0] :] if loud.size else pcm[:0]


_KEEP_SECONDS = 10.0
"""Audio handed to the output that :meth:`SpeechOut.pause` can take back (more than the room's
queue ever holds)."""


async def _drain(chunks: Chunks) -> AsyncIterator[PCM]:
    while (item := await chunks.get()) is not None:
        if isinstance(item, Exception):
            raise item
        yield item


async def _aclose(stream: AsyncIterator[PCM]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def synthesize_into(tts: TTS, text: str, voice: str | None, chunks: Chunks) -> bool:
    """Synthesise ``text`` into ``chunks``, then ``None``. On a failure the error goes into
    ``chunks`` instead of the ``None`` (the player raises it) and the answer is ``False``."""
    stream = tts.synthesize(text, voice=voice)
    try:
        async for chunk in stream:
            chunks.put_nowait(chunk)
    except Exception as e:  # noqa: BLE001 (handed to the player, which raises it)
        chunks.put_nowait(e)
        return False
    finally:
        await _aclose(stream)
    chunks.put_nowait(None)
    return True


@dataclass(slots=True)
class _Segment:
    text: str
    start: float
    end: float


class SpeechOut:
    """One agent turn's speech. Not reusable: make one per turn."""

    def __init__(
        self,
        *,
        tts: TTS,
        audio: AudioOutput,
        voice: str | None = None,
        frame_ms: int = 20,
        on_first_audio: Callable[[float], None] | None = None,
        on_sentence: Callable[[str], None] | None = None,
        primed: Callable[[str], Held | None] | None = None,
    ) -> None:
        self._tts = tts
        self._audio = audio
        self._voice = voice
        self._rate = tts.sample_rate
        self._frame = max(1, self._rate * frame_ms // 1000)
        self._pushed = 0.0  # seconds of our audio handed to the output
        self._segments: list[_Segment] = []
        self._stopped_at: float | None = None
        self._open = asyncio.Event()  # cleared while paused: captures wait
        self._open.set()
        self._recent: deque[rtc.AudioFrame] = deque()  # frames handed out, newest last
        self._recent_s = 0.0
        self._held: list[rtc.AudioFrame] = []  # unplayed frames taken back by pause()
        self._held_s = 0.0  # their duration (still counted in _pushed: the stream's position)
        self._first_audio_ms: float | None = None
        self._on_first_audio = on_first_audio
        self._on_sentence = on_sentence
        self._primed = primed  # held audio of the first piece (a speculative answer's), if any
        # The track publishes at the voice pipeline's speech rate; another engine (a vision
        # pipeline's, a per-job choice) is resampled to it rather than refused by the track.
        self._resampler = (
            None if audio.sample_rate == self._rate
            else rtc.AudioResampler(self._rate, audio.sample_rate, num_channels=1)
        )

    @property
    def provider(self) -> str:
        return self._tts.name

    @property
    def first_audio_ms(self) -> float | None:
        return self._first_audio_ms

    @property
    def pushed_seconds(self) -> float:
        return self._pushed

    @property
    def stopped(self) -> bool:
        return self._stopped_at is not None

    @property
    def paused(self) -> bool:
        return not self._open.is_set() and self._stopped_at is None

    def pause(self) -> None:
        """Silence the turn now, keeping what the caller has not heard yet: the queued audio is
        taken back from the output, and further audio waits, until :meth:`resume`."""
        if self.paused or self._stopped_at is not None:
            return
        self._open.clear()
        queued = min(self._audio.queued_duration, self._recent_s)
        held: list[rtc.AudioFrame] = []
        while self._recent and queued > 1e-6:
            frame = self._recent.pop()
            held.append(frame)
            queued -= frame.duration
            self._recent_s -= frame.duration
        held.reverse()
        self._held = held
        self._held_s = sum(f.duration for f in held)
        self._audio.clear_queue()

    async def resume(self) -> None:
        """Play on from where the caller stopped hearing (a false interruption)."""
        if not self.paused:
            return
        held, self._held = self._held, []
        for frame in held:
            if self._stopped_at is not None:
                return  # stopped while resuming: the rest is not for the caller
            await self._audio.capture_frame(frame)
            self._held_s = max(0.0, self._held_s - frame.duration)
            self._remember(frame)
        self._held_s = 0.0
        self._open.set()

    async def wait_open(self) -> None:
        """Return once the speech is not paused (at once when it is not)."""
        await self._open.wait()

    def played_seconds(self) -> float:
        """Seconds of this turn's audio the caller has heard (output queue assumed FIFO)."""
        if self._stopped_at is not None:
            return self._stopped_at
        unplayed = self._audio.queued_duration + self._held_s
        return max(0.0, self._pushed - min(self._pushed, unplayed))

    async def speak(self, text: str) -> None:
        """Synthesise ``text`` and stream it out. Raises the TTS's :class:`ProviderError`."""
        if self._stopped_at is None:
            await self._play_segment(text, self._tts.synthesize(text, voice=self._voice))

    async def play(self, sentences: asyncio.Queue[str | None]) -> None:
        """Speak ``sentences`` in order until ``None``, synthesising the next one while the
        current one streams out (one synthesis at a time, at most one sentence ahead)."""
        ahead: asyncio.Queue[tuple[str, Chunks] | None] = asyncio.Queue(maxsize=1)
        synth = asyncio.create_task(self._synth_ahead(sentences, ahead), name="speech-synth")
        try:
            while (item := await ahead.get()) is not None:
                text, chunks = item
                await self._play_segment(text, _drain(chunks))
            synth.result()  # done: surfaces nothing, or a bug of ours
        finally:
            await cancel_and_wait(synth)

    async def _synth_ahead(
        self, sentences: asyncio.Queue[str | None], ahead: asyncio.Queue[tuple[str, Chunks] | None]
    ) -> None:
        while (text := await sentences.get()) is not None:
            primed, self._primed = self._primed, None  # only a first piece can be held
            held = primed(text) if primed is not None else None
            if held is not None:
                ready, making = held
                await ahead.put((text, ready))  # synthesised while the turn was decided
                await asyncio.wait({making})  # one synthesis at a time: it finishes first
                continue
            chunks: Chunks = asyncio.Queue()
            await ahead.put((text, chunks))  # waits while a sentence is already queued
            if not await synthesize_into(self._tts, text, self._voice, chunks):
                return
        await ahead.put(None)

    async def _play_segment(self, text: str, stream: AsyncIterator[PCM]) -> None:
        if self._stopped_at is not None:
            return
        seg = _Segment(text=text, start=self._pushed, end=self._pushed)
        self._segments.append(seg)
        carry = np.zeros(0, dtype=np.int16)
        announced = False
        try:
            async for chunk in stream:
                if self._pushed == 0.0:  # the answer's first sound starts at once
                    chunk = lstrip_silence(chunk)
                if chunk.size == 0:
                    continue
                pcm = np.concatenate((carry, chunk)) if carry.size else chunk
                whole = pcm.size - pcm.size % self._frame
                for i in range(0, whole, self._frame):
                    if not announced:
                        announced = True
                        if self._on_sentence is not None:
                            self._on_sentence(text)
                    await self._capture(pcm[i : i + self._frame])
                    seg.end = self._pushed
                carry = pcm[whole:]
        finally:
            await _aclose(stream)  # an interrupted synthesis stops now (and its connection)
        if carry.size:
            padded = np.zeros(self._frame, dtype=np.int16)
            padded[: carry.size] = carry
            if not announced and self._on_sentence is not None:
                self._on_sentence(text)
            await self._capture(padded)
            seg.end = self._pushed

    async def _capture(self, pcm: PCM) -> None:
        if not self._open.is_set():
            await self._open.wait()
        if self._stopped_at is not None:
            return
        frame = rtc.AudioFrame(
            data=pcm.tobytes(), sample_rate=self._rate, num_channels=1,
            samples_per_channel=pcm.size,
        )
        if self._first_audio_ms is None:
            self._first_audio_ms = monotonic_ms()
            if self._on_first_audio is not None:
                self._on_first_audio(self._audio.queued_duration)
        if self._resampler is None:
            await self._output(frame)
        else:
            for out in self._resampler.push(frame):
                await self._output(out)

    async def _output(self, frame: rtc.AudioFrame) -> None:
        await self._audio.capture_frame(frame)
        self._pushed += frame.duration
        self._remember(frame)

    def _remember(self, frame: rtc.AudioFrame) -> None:
        self._recent.append(frame)
        self._recent_s += frame.duration
        while self._recent and self._recent_s - self._recent[0].duration > _KEEP_SECONDS:
            self._recent_s -= self._recent.popleft().duration

    def stop(self) -> float:
        """Barge-in: note what was heard, then drop everything queued. Returns seconds heard."""
        if self._stopped_at is None:
            self._stopped_at = self.played_seconds()
            self._held = []
            self._held_s = 0.0
            self._audio.clear_queue()
            self._open.set()  # a capture waiting on a pause returns (and plays nothing)
        return self._stopped_at

    def spoken_text(self) -> str:
        """The text the caller heard: whole sentences, then the heard share of a partial one."""
        played = self.played_seconds()
        words: list[str] = []
        for seg in self._segments:
            if seg.end <= seg.start:
                break
            if played >= seg.end - 1e-6:
                words.extend(seg.text.split())
                continue
            share = (played - seg.start) / (seg.end - seg.start)
            if share > 0:
                seg_words = seg.text.split()
                words.extend(seg_words[: int(len(seg_words) * share)])
            break
        return " ".join(words)

    def full_text(self) -> str:
        return " ".join(seg.text for seg in self._segments)
