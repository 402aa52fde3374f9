"""Barge-in: what the voice pipeline does when a caller speaks while the agent thinks or speaks.

Over the agent's speech, ``turn.barge_in_min_ms`` of confident speech (or, when set,
``turn.barge_in_fast_ms`` of very confident speech) pauses it at once
(:class:`~agents.pipeline.interruptions.Interruptions`): the turn's words then stop it (a turn
from ``turn.paused_min_speech_ms`` while it is paused), a noise or a backchannel lets it
resume. Over the agent's thinking, ``turn.min_speech_ms`` of speech cancels the answer in flight.
Speech over the agent too short for either is a false interruption: the agent goes on.

A mixin of :class:`~agents.pipeline.voice.VoicePipeline` (kept apart so each file stays small);
the attributes below are the pipeline's.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from agents.messages import AgentState, OutboundMessage
from agents.messages import transcript_chunk as transcript_msg
from agents.pipeline.config import PipelineConfig, TurnConfig
from agents.pipeline.interim import InterimTranscripts
from agents.pipeline.interruptions import Interruptions
from agents.pipeline.journal import Journal
from agents.pipeline.reply import Reply, ReplyOutcome
from agents.pipeline.trace import INTERRUPTIONS
from agents.pipeline.turns import TurnDetector, TurnEnded
from agents.providers.base import LLM, Transcript

_WORDS = re.compile(r"[\w'-]+")


def pause_due(turn: TurnConfig, speech_ms: float, confidence: float, *, fast: bool) -> bool:
    """Whether ``speech_ms`` of speech at mean voice probability ``confidence``, over the agent's
    speech, takes the floor: ``barge_in_min_ms`` at ``barge_in_confidence``, or (``fast``: the
    agent can pause and resume) ``barge_in_fast_ms`` at ``barge_in_fast_confidence``."""
    if (fast and turn.barge_in_fast_ms > 0 and speech_ms >= turn.barge_in_fast_ms
            and confidence >= turn.barge_in_fast_confidence):
        return True  # very confident speech pauses sooner (a pause can still resume)
    return speech_ms >= turn.barge_in_min_ms and confidence >= turn.barge_in_confidence


def only_backchannels(text: str, backchannels: list[str]) -> bool:
    """Whether ``text`` says nothing but ``backchannels`` ("Mm-hmm, okay."), compared without
    case and punctuation (hyphens and apostrophes kept), whole words only."""
    words = _WORDS.findall(text.lower())
    if not words:
        return False
    phrases = sorted((tuple(_WORDS.findall(b.lower())) for b in backchannels), key=len,
                     reverse=True)
    i = 0
    while i < len(words):
        match = next((p for p in phrases if p and tuple(words[i : i + len(p)]) == p), None)
        if match is None:
            return False
        i += len(match)
    return True


def words_stop(turn: TurnConfig, text: str) -> bool:
    """Whether a turn over the paused agent that says ``text`` stops it: words, and not only
    ``turn.backchannels``. (Whether the sound is a turn at all: ``turn.paused_turn_ms``.)"""
    return bool(text) and not only_backchannels(text, turn.backchannels)


class BargeIn:
    _cfg: PipelineConfig
    _llm: LLM | None
    _log: Any
    _closed: bool
    _status: AgentState | None
    _reply: Reply | None
    _turn_task: asyncio.Task[ReplyOutcome | None] | None
    _cut: asyncio.Task[ReplyOutcome | None] | None
    _inbox: asyncio.Queue[Any]
    _interims: InterimTranscripts
    _interrupts: Interruptions
    _heard: dict[str, Transcript]
    _journal: Journal

    def _agent_active(self) -> bool:
        raise NotImplementedError

    def _publish(self, message: OutboundMessage) -> None:
        raise NotImplementedError

    def _set_status(self, status: AgentState, message: str | None) -> None:
        raise NotImplementedError

    def _on_turn_ended(self, ev: TurnEnded) -> None:
        self._interims.cancel(ev.speaker)
        if self._llm is None:
            self._inbox.put_nowait(ev)
            return
        if self._interrupts.held is not None and self._agent_active():
            self._interrupts.check(ev, ev.pcm, self._held_turn_heard)
            return
        if self._agent_active() and self._status == "speaking" and not self._interrupting():
            # Speech over the agent, shorter than the barge-in minimum: not for the agent.
            self._false_interruption(ev.speaker, ev.speech_ms)
            return
        if self._agent_active() and not self._interrupting():
            self._barge_in(ev.speaker, ev.speech_ms)
        self._inbox.put_nowait(ev)

    def _maybe_barge_in(self, det: TurnDetector) -> None:
        if self._llm is None or not self._agent_active() or self._interrupting():
            return
        if self._interrupts.held is not None:
            det.words_decide = True  # paused already: the turn's words decide, however short
            return
        turn = self._cfg.turn
        speaking = self._status == "speaking"
        if speaking:
            if not pause_due(turn, det.speech_ms, det.speech_confidence,
                             fast=self._interrupts.enabled):
                return
        elif det.speech_ms < turn.min_speech_ms:
            return
        if speaking and self._reply is not None and self._interrupts.enabled:
            if self._interrupts.hold(self._reply):
                det.words_decide = True
                self._log.info("agent_paused", speaker=det.speaker, speech_ms=round(det.speech_ms))
                self._set_status("listening", None)
            return
        self._barge_in(det.speaker, det.speech_ms)

    def _held_turn_heard(self, ev: TurnEnded, result: Transcript | None) -> None:
        """The turn spoken over the paused agent: words stop it, anything else resumes it."""
        if self._closed or self._interrupts.held is None:
            if result is not None:
                self._heard[ev.transcript_id] = result
            self._inbox.put_nowait(ev)  # the held answer is gone: an ordinary turn
            return
        text = result.text.strip() if result is not None else ""
        if result is None or words_stop(self._cfg.turn, text):
            if result is not None:
                self._heard[ev.transcript_id] = result
            self._interrupts.release()
            self._barge_in(ev.speaker, ev.speech_ms)
            self._inbox.put_nowait(ev)
            return
        # A noise, or only a listener's "mm-hmm": shown as said (or closed), not answered.
        if text or self._interims.take_sent(ev.transcript_id):
            self._publish(transcript_msg(
                text=text, is_final=True, participant_id=ev.speaker,
                transcript_id=ev.transcript_id, confidence=result.confidence,
            ))
        if text:
            self._log.info("backchannel", speaker=ev.speaker, text=text)
        self._false_interruption(ev.speaker, ev.speech_ms)
        self._interrupts.noise_ended()

    def _resumed(self, reply: Reply) -> None:
        if reply is self._reply and not self._closed:
            self._log.info("agent_resumed")
            self._set_status("speaking", None)

    def _interrupting(self) -> bool:
        return self._cut is not None and self._cut is self._turn_task

    def _barge_in(self, speaker: str, speech_ms: float) -> None:
        reply, task = self._reply, self._turn_task
        self._cut = task
        if reply is not None:
            reply.interrupt()  # clears the queued audio now
        if task is not None and not task.done():
            task.cancel()
        self._journal.counters["barge_ins"] += 1
        INTERRUPTIONS.labels(kind="barge_in").inc()
        self._log.info("barge_in", speaker=speaker, speech_ms=round(speech_ms))
        self._set_status("listening", None)

    def _false_interruption(self, speaker: str, speech_ms: float) -> None:
        self._journal.counters["false_interruptions"] += 1
        INTERRUPTIONS.labels(kind="false").inc()
        self._log.info("false_interruption", speaker=speaker, speech_ms=round(speech_ms))
