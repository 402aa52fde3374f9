"""Interim transcripts: while a speaker is still talking, the growing utterance is transcribed
every ``interim_interval_ms`` (for speech engines cheap enough to do it) and published as a
non-final ``transcript_chunk`` with the turn's ``transcript_id``. One run per speaker at a time;
every run is a task this object owns.

A run also starts at a gap in the speech (``segment_gap_ms`` of silence) half an interval after
the last one, and a run without a gap waits up to half an interval longer for one. A run that
started at a gap becomes a segment (:mod:`agents.pipeline.segments`): later runs and the final
transcript only recognise the audio after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agents.messages import OutboundMessage
from agents.messages import transcript_chunk as transcript_msg
from agents.pipeline.aio import TaskSet
from agents.pipeline.segments import Heard, Segments
from agents.pipeline.turns import TurnDetector
from agents.providers.base import STT


class InterimTranscripts:
    def __init__(
        self,
        *,
        stt: STT,
        interval_ms: int,
        language: str | None,
        publish: Callable[[OutboundMessage], None],
        log: Any,
        segments: Segments | None = None,
        gap_ms: int = 0,
    ) -> None:
        self._stt = stt
        self._segments = segments or Segments(stt=stt, language=language)
        self._gap_ms = gap_ms
        self._step = 16 * interval_ms  # samples at 16 kHz
        self._language = language
        self._publish = publish
        self._log = log
        self._running: dict[str, asyncio.Task[None]] = {}
        self._at: dict[str, int] = {}  # utterance length (samples) at the speaker's last run
        self._sent: set[str] = set()  # transcript ids that got an interim
        self._tasks = TaskSet()

    def speech_started(self, speaker: str) -> None:
        self._at[speaker] = 0

    def maybe_run(self, det: TurnDetector) -> None:
        """Start a run for ``det``'s speaker when the utterance grew by an interval."""
        if not self._stt.supports_interim:
            return
        speaker = det.speaker
        grown = det.utterance_samples - self._at.get(speaker, 0)
        at_gap = self._gap_ms > 0 and det.silence_ms >= self._gap_ms
        if at_gap:
            due = grown >= self._step // 2  # a cut that splits no word: take it
        else:  # a gap may come soon: wait for one a little longer
            due = grown >= self._step + (self._step // 2 if self._gap_ms > 0 else 0)
        if not due:
            return
        running = self._running.get(speaker)
        if running is not None and not running.done():
            return
        self._at[speaker] = det.utterance_samples
        self._running[speaker] = self._tasks.spawn(
            self._run(det, det.transcript_id, commit=at_gap),
            name=f"pipeline-interim-{speaker}",
        )

    def take_sent(self, transcript_id: str) -> bool:
        """Whether clients saw an interim of this transcript (then they must get its final,
        even an empty one). Forgets it."""
        if transcript_id in self._sent:
            self._sent.discard(transcript_id)
            return True
        return False

    def cancel(self, speaker: str) -> None:
        task = self._running.pop(speaker, None)
        if task is not None and not task.done():
            task.cancel()

    def forget(self, speaker: str) -> None:
        self.cancel(speaker)
        self._at.pop(speaker, None)
        self._segments.forget(speaker)

    async def aclose(self) -> None:
        await self._tasks.cancel()

    async def _run(self, det: TurnDetector, transcript_id: str, *, commit: bool = False) -> None:
        pcm = det.utterance()
        try:
            result = await self._segments.transcribe(det.speaker, transcript_id, pcm)
        except Exception as e:  # noqa: BLE001 (interims are best effort)
            self._log.debug("interim_failed", speaker=det.speaker, error=str(e))
            return
        if result.degenerate:  # a runaway decode: nothing rather than garbage
            self._log.info("interim_dropped_runaway", speaker=det.speaker)
            return
        if not det.in_speech or det.transcript_id != transcript_id:
            return  # the utterance is over (or another began)
        if commit:  # the utterance so far ended in silence: a cut that splits no word
            self._segments.commit(det.speaker, Heard(transcript_id, pcm.size, result))
        if result.text.strip():
            self._sent.add(transcript_id)
            self._publish(transcript_msg(
                text=result.text.strip(), is_final=False, participant_id=det.speaker,
                transcript_id=transcript_id, confidence=result.confidence,
            ))
