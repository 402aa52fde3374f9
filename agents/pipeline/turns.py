"""Per-speaker turn detection driven by voice-activity probabilities.

A speaker's turn starts at the first analysis window whose speech probability reaches the
threshold, and ends after ``silence_ms`` of windows below the (slightly lower) release threshold.
Speech shorter than ``min_speech_ms`` in total is not a turn (a cough, a click). The detector keeps
the utterance's audio, with ``prefix_ms`` from before the onset, for speech recognition.

``push`` is synchronous and cheap: it runs for every 10 ms frame of every speaker.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from agents.messages import new_id
from agents.pipeline.config import TurnConfig
from agents.providers.base import PCM, VADStream, monotonic_ms

_RELEASE_MARGIN = 0.15


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    speaker: str
    transcript_id: str


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The speaker finished a turn. ``end_of_speech_ms`` is when the last speech window arrived,
    ``decided_ms`` when the silence window closed (both :func:`monotonic_ms`)."""

    speaker: str
    transcript_id: str
    pcm: PCM
    speech_ms: float
    end_of_speech_ms: float
    decided_ms: float
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class SpeechDiscarded:
    """Speech too short to be a turn."""

    speaker: str
    transcript_id: str
    speech_ms: float


TurnEvent = SpeechStarted | TurnEnded | SpeechDiscarded


class TurnDetector:
    """Turns for one speaker. Not thread-safe; lives on the event loop."""

    def __init__(self, *, speaker: str, vad: VADStream, config: TurnConfig) -> None:
        self.speaker = speaker
        self._vad = vad
        self._cfg = config
        self._window_ms = vad.window_seconds * 1000.0
        self._prefix: deque[PCM] = deque()
        self._prefix_samples = 0
        self._max_prefix = int(16 * config.prefix_ms)
        self._chunks: list[PCM] = []
        self._samples = 0
        self._in_speech = False
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        self._last_speech_at = 0.0
        self._transcript_id = ""

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def speech_ms(self) -> float:
        """Speech heard so far in the current utterance (0 outside one)."""
        return self._speech_ms if self._in_speech else 0.0

    @property
    def utterance_samples(self) -> int:
        """Samples of the current utterance so far (0 outside one)."""
        return self._samples if self._in_speech else 0

    @property
    def transcript_id(self) -> str:
        return self._transcript_id

    def utterance(self) -> PCM:
        """The current utterance's audio so far (for interim transcripts)."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)

    def push(self, pcm: PCM) -> list[TurnEvent]:
        """Feed 16 kHz mono samples; return what happened, oldest first."""
        if pcm.size == 0:
            return []
        probs = self._vad.push(pcm)
        if self._in_speech:
            self._chunks.append(pcm)
            self._samples += pcm.size
        else:
            self._remember_prefix(pcm)
        events: list[TurnEvent] = []
        now = monotonic_ms()
        for p in probs:
            if not self._in_speech:
                if p >= self._cfg.vad_threshold:
                    self._start(now)
                    events.append(SpeechStarted(self.speaker, self._transcript_id))
                continue
            if p >= self._cfg.vad_threshold - _RELEASE_MARGIN:
                self._speech_ms += self._window_ms
                self._silence_ms = 0.0
                self._last_speech_at = now
            else:
                self._silence_ms += self._window_ms
                if self._silence_ms >= self._cfg.silence_ms:
                    events.append(self._finish(now, truncated=False))
        if self._in_speech and self._samples >= 16000 * self._cfg.max_turn_seconds:
            events.append(self._finish(now, truncated=True))
        return events

    def flush(self) -> TurnEvent | None:
        """End the current utterance now (the speaker left or stopped publishing)."""
        if not self._in_speech:
            return None
        return self._finish(monotonic_ms(), truncated=True)

    def reset(self) -> None:
        self._in_speech = False
        self._chunks = []
        self._samples = 0
        self._prefix.clear()
        self._prefix_samples = 0
        self._vad.reset()

    # -- internals --------------------------------------------------------------------------

    def _remember_prefix(self, pcm: PCM) -> None:
        self._prefix.append(pcm)
        self._prefix_samples += pcm.size
        while self._prefix and self._prefix_samples - self._prefix[0].size >= self._max_prefix:
            self._prefix_samples -= self._prefix.popleft().size

    def _start(self, now: float) -> None:
        self._in_speech = True
        self._speech_ms = self._window_ms
        self._silence_ms = 0.0
        self._last_speech_at = now
        self._transcript_id = new_id("TR")
        self._chunks = list(self._prefix)
        self._samples = self._prefix_samples
        self._prefix.clear()
        self._prefix_samples = 0

    def _finish(self, now: float, *, truncated: bool) -> TurnEvent:
        speech_ms = self._speech_ms
        pcm = self.utterance()
        tid = self._transcript_id
        self._in_speech = False
        self._chunks = []
        self._samples = 0
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        if speech_ms < self._cfg.min_speech_ms:
            return SpeechDiscarded(self.speaker, tid, speech_ms)
        return TurnEnded(
            speaker=self.speaker, transcript_id=tid, pcm=pcm, speech_ms=speech_ms,
            end_of_speech_ms=self._last_speech_at, decided_ms=now, truncated=truncated,
        )
