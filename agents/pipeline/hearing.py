"""Each speaker's ears in a voice conversation: :class:`Hearing`.

One :class:`~agents.pipeline.turns.TurnDetector` per speaker, made at their first frame: 16 kHz
mono frames go through voice-activity detection into it, and what they change (speech started, a
pause, the end of a turn) goes to ``on_events``. With a VAD that scores windows in batches, the
windows of every speaker are scored together once per loop tick and the events follow then.
A speaker whose audio cannot be used (another format, a failing VAD) is logged once, not per
frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from livekit import rtc

from agents.pipeline.aio import loop_running
from agents.pipeline.config import TurnConfig
from agents.pipeline.turns import BatchedVADStream, EventsCallback, TurnDetector
from agents.providers.base import VAD
from agents.providers.errors import ProviderError


class Hearing:
    def __init__(self, *, vad: VAD, config: TurnConfig, on_events: EventsCallback,
                 log: Any) -> None:
        self._vad = vad
        self._cfg = config
        self._on_events = on_events
        self._log = log
        self._detectors: dict[str, TurnDetector] = {}
        self._bad_audio: set[str] = set()

    def push(self, speaker: str, frame: rtc.AudioFrame) -> None:
        if frame.sample_rate != 16000 or frame.num_channels != 1:
            if speaker not in self._bad_audio:
                self._bad_audio.add(speaker)
                self._log.warning(
                    "audio_format_rejected", speaker=speaker, sample_rate=frame.sample_rate,
                    channels=frame.num_channels,
                )
            return
        det = self._detectors.get(speaker)
        if det is None:
            det = self._detectors[speaker] = self._new_detector(speaker)
        pcm = np.frombuffer(frame.data, dtype=np.int16).copy()
        try:
            if det.deferred:
                det.feed(pcm)  # events arrive in on_events, at most one loop tick later
                return
            events = det.push(pcm)
        except (ProviderError, ValueError) as e:
            self._failed(det, e)
            return
        self._on_events(det, events)

    def _new_detector(self, speaker: str) -> TurnDetector:
        stream = self._vad.stream()
        if isinstance(stream, BatchedVADStream) and loop_running():
            return TurnDetector(speaker=speaker, vad=stream, config=self._cfg,
                                on_events=self._on_events, on_error=self._failed)
        return TurnDetector(speaker=speaker, vad=stream, config=self._cfg)

    def _failed(self, det: TurnDetector, error: Exception) -> None:
        if det.speaker not in self._bad_audio:
            self._bad_audio.add(det.speaker)
            self._log.warning("vad_failed", speaker=det.speaker, error=str(error))

    def gap(self, speaker: str, ms: float) -> None:
        """``ms`` of ``speaker``'s audio were dropped: see :meth:`TurnDetector.gap`."""
        det = self._detectors.get(speaker)
        if det is not None:
            events = det.gap(ms)
            if events:
                self._on_events(det, events)

    def detector(self, speaker: str) -> TurnDetector | None:
        """``speaker``'s detector while they are in the conversation."""
        return self._detectors.get(speaker)

    def anyone_speaking(self) -> bool:
        return any(d.in_speech for d in self._detectors.values())

    def forget(self, speaker: str) -> None:
        """``speaker`` left: their detector and any half-heard utterance go."""
        self._bad_audio.discard(speaker)
        det = self._detectors.pop(speaker, None)
        if det is not None:
            det.reset()
