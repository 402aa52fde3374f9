"""Incremental recognition: the part of an utterance already transcribed is not transcribed again.

Speech engines such as Moonshine transcribe a whole utterance at once, so recognising it again at
the end (for the final transcript) costs as much as the first time. Here an utterance is cut into
*segments* at points where the speaker was silent, so no word is split:

- at a gap inside the speech (``turn.segment_gap_ms`` of silence windows, e.g. between phrases),
  an interim transcript of the audio since the last cut becomes a segment
  (:mod:`agents.pipeline.interim`);
- at a pause the speaker went on from, the speculative final transcript of the utterance so far
  becomes one (:mod:`agents.pipeline.pauses`).

The final transcript (and later interims) then transcribe only the audio after the last cut and
join the texts (:meth:`Segments.transcribe`). Segments belong to one utterance (its
``transcript_id``) of one speaker; a new utterance starts from nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.providers.base import PCM, STT, Transcript


@dataclass(frozen=True, slots=True)
class Heard:
    """The utterance ``transcript_id`` transcribed up to sample ``samples``."""

    transcript_id: str
    samples: int
    result: Transcript


def join(before: Heard, after: Transcript, after_samples: int) -> Transcript:
    """``before``'s text followed by ``after``'s (which covered ``after_samples`` samples)."""
    text = " ".join(t for t in (before.result.text.strip(), after.text.strip()) if t)
    total = before.samples + after_samples
    confidence = (
        (before.result.confidence * before.samples + after.confidence * after_samples) / total
        if total else 0.0
    )
    return Transcript(
        text=text, confidence=round(confidence, 3), language=before.result.language,
        degenerate=before.result.degenerate or after.degenerate,
    )


class Segments:
    """What is known of each speaker's current utterance. Lives on the event loop."""

    def __init__(self, *, stt: STT, language: str | None) -> None:
        self._stt = stt
        self._language = language
        self._heard: dict[str, Heard] = {}
        self.reused_seconds = 0.0
        """Audio the final and interim transcripts did not transcribe again (for the record)."""

    def prefix(self, speaker: str, transcript_id: str) -> Heard | None:
        heard = self._heard.get(speaker)
        return heard if heard is not None and heard.transcript_id == transcript_id else None

    def commit(self, speaker: str, heard: Heard) -> None:
        """``heard`` covers the utterance up to a silent point: later transcriptions start
        there. A shorter one than what is known already changes nothing."""
        if heard.result.degenerate:
            return  # a runaway decode is no base to build on
        known = self.prefix(speaker, heard.transcript_id)
        if known is None or known.samples < heard.samples:
            self._heard[speaker] = heard

    def forget(self, speaker: str) -> None:
        self._heard.pop(speaker, None)

    async def transcribe(self, speaker: str, transcript_id: str, pcm: PCM) -> Transcript:
        """The transcript of ``pcm`` (the utterance from its start), recognising only what
        follows the known prefix."""
        heard = self.prefix(speaker, transcript_id)
        if heard is not None and heard.samples == pcm.size:
            return heard.result
        if heard is None or heard.samples > pcm.size:
            return await self._stt.transcribe(pcm, language=self._language)
        rest = pcm[heard.samples :]
        result = await self._stt.transcribe(rest, language=self._language)
        self.reused_seconds += heard.samples / 16000
        return join(heard, result, rest.size)
