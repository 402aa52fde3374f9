"""The buffered voice pipeline: a :class:`~agents.io.Conversation` for one job.

Audio from each speaker goes through voice-activity detection into a per-speaker
:class:`~agents.pipeline.turns.TurnDetector`. A finished turn (or a ``user_text`` message) becomes
one agent turn, run in a task this object owns: speech recognition, then a :class:`Reply` (the
model with its tools, speech streamed into the room). At a pause the end-of-turn model and the
speculative final transcript start (:mod:`agents.pipeline.pauses`); speech over the agent pauses
it and either stops or resumes it (:mod:`agents.pipeline.bargein`). Everything the clients see is
published, in order, by one sender task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog
from livekit import rtc

from agents.config import PersonaConfig
from agents.io import AudioOutput, MessageOutput
from agents.job import JobSpec
from agents.messages import (
    MAX_USER_TEXT_CHARS,
    AgentState,
    OutboundMessage,
    agent_status,
    new_id,
    todo_list,
)
from agents.messages import transcript_chunk as transcript_msg
from agents.pipeline.aio import cancel_and_wait, current_task_cancelling
from agents.pipeline.bargein import BargeIn
from agents.pipeline.config import PipelineConfig
from agents.pipeline.context import ChatContext, FrameSource
from agents.pipeline.extras import TurnExtras
from agents.pipeline.hearing import Hearing
from agents.pipeline.interim import InterimTranscripts
from agents.pipeline.interruptions import Interruptions
from agents.pipeline.journal import Journal
from agents.pipeline.outbox import Outbox
from agents.pipeline.pauses import PauseWork
from agents.pipeline.reply import Reply, ReplyEnv, ReplyOutcome, unexpected
from agents.pipeline.segments import Segments
from agents.pipeline.speculation import Draft
from agents.pipeline.trace import TurnTrace
from agents.pipeline.turns import (
    LINE_KINDS,
    AgentTurn,
    ContinueTurn,
    LineTurn,
    Paused,
    Resumed,
    SpeechDiscarded,
    SpeechStarted,
    TextTurn,
    TurnDetector,
    TurnEnded,
    TurnEvent,
)
from agents.providers import base as pb
from agents.providers.base import LLM, PCM, STT, TTS, VAD, ImagePart, Transcript, monotonic_ms
from agents.providers.errors import ProviderError
from agents.resume import ConversationCheckpoint
from agents.tools import AgentTools

log = structlog.get_logger("agents.pipeline.voice")


class VoicePipeline(BargeIn):
    """One job's conversation. Push methods never block; :meth:`run` drives the turns."""

    def __init__(
        self,
        *,
        config: PipelineConfig,
        spec: JobSpec,
        audio: AudioOutput,
        messages: MessageOutput,
        persona: PersonaConfig,
        vad: VAD,
        stt: STT,
        llm: LLM | None,
        tts: TTS | None,
        tools: AgentTools,
        frames: FrameSource | None = None,
        end_of_turn: pb.EndOfTurnModel | None = None,
        audience: asyncio.Event | None = None,
        extras: TurnExtras | None = None,
        resume: ConversationCheckpoint | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._cfg = config
        self._after_failover = resume is not None
        self._audience = audience
        self._spec = spec
        self._persona = persona
        self._stt = stt
        self._llm = llm if config.audio.has("llm") else None
        self._tts = tts if config.audio.has("tts") else None
        self._tools = tools
        self._frames = frames
        self._log = log.bind(job_id=spec.job_id, room=spec.room_name)
        self._context = ChatContext(
            instructions=persona.instructions, max_messages=config.history_messages
        )
        self._journal = Journal(history=lambda: self._context.history, board=tools.board,
                                on_checkpoint=on_checkpoint, resume=resume)
        self._env = ReplyEnv(
            config=config, audio=audio, publish=self._publish, set_status=self._set_status,
            context=self._context, tools=tools, agent_identity=spec.agent_identity,
            llm=self._llm, tts=self._tts, voice=persona.voice, extras=extras or TurnExtras(),
            saved=self._journal.save,
        )
        self._hearing = Hearing(vad=vad, config=config.turn, on_events=self._turn_events,
                                log=self._log)
        self._inbox: asyncio.Queue[AgentTurn | None] = asyncio.Queue()
        self._outbox = Outbox(output=messages)
        self._status: AgentState | None = None
        self._turn_task: asyncio.Task[ReplyOutcome | None] | None = None
        self._reply: Reply | None = None
        segments = Segments(stt=stt, language=persona.language)  # incremental recognition
        self._interims = InterimTranscripts(
            stt=stt, interval_ms=config.turn.interim_interval_ms, language=persona.language,
            publish=self._publish, log=self._log, segments=segments,
            gap_ms=config.turn.segment_gap_ms,
        )
        self._pauses = PauseWork(
            config=config.turn, stt=stt, end_of_turn=end_of_turn, language=persona.language,
            on_complete=self._end_turn_now, log=self._log, answers=self._env,
            idle=lambda: not self._agent_active(), segments=segments,
        )
        self._interrupts = Interruptions(
            timeout_s=config.turn.false_interruption_timeout, stt=stt,
            language=persona.language, pauses=self._pauses, on_resumed=self._resumed,
            log=self._log,
        )
        self._heard: dict[str, Transcript] = {}  # transcripts already known, by transcript id
        self._carry: dict[str, PCM] = {}
        self._unanswered = False  # the last model turn was interrupted before saying anything
        self._cut: asyncio.Task[ReplyOutcome | None] | None = None
        self._failures = 0
        self._end_reason: str | None = None
        self._running = False
        self._closed = False
        if resume is not None:  # failover: the earlier leg's history (and transcript) go on
            self._context.restore(resume.chat_history())

    # -- Conversation: push side -------------------------------------------------------------

    def push_audio(self, speaker: str, frame: rtc.AudioFrame) -> None:
        if not self._closed:
            self._hearing.push(speaker, frame)

    def audio_gap(self, speaker: str, ms: float) -> None:
        """``ms`` of ``speaker``'s audio were dropped (the process fell behind)."""
        if not self._closed:
            self._hearing.gap(speaker, ms)

    def _turn_events(self, det: TurnDetector, events: list[TurnEvent]) -> None:
        """What one frame of ``det``'s speaker changed (``events`` may be empty)."""
        speaker = det.speaker
        if self._closed or self._hearing.detector(speaker) is not det:
            return  # the speaker left (or the pipeline closed) while the frame was scored
        for ev in events:
            if isinstance(ev, SpeechStarted):
                self._interims.speech_started(speaker)
                self._interrupts.speech_started()
                self._speaking(speaker, True)
            elif isinstance(ev, Paused):
                self._interims.cancel(speaker)  # the final transcript starts: it has the CPU
                self._pauses.paused(ev)
            elif isinstance(ev, Resumed):
                self._pauses.resumed(speaker)
            elif isinstance(ev, TurnEnded):
                self._speaking(speaker, False)
                self._pauses.ended(ev)
                self._on_turn_ended(ev)
            elif isinstance(ev, SpeechDiscarded):
                self._speaking(speaker, False)
                self._pauses.cancel(speaker)
                self._interims.take_sent(ev.transcript_id)
                self._interims.cancel(speaker)
                if self._agent_active():
                    self._false_interruption(speaker, ev.speech_ms)
                    self._interrupts.noise_ended()
        if det.in_speech:
            self._maybe_barge_in(det)
            if not det.paused:  # at a pause the final transcript may be running already
                self._interims.maybe_run(det)

    def _end_turn_now(self, speaker: str, pause_id: int, at_silence_ms: float) -> None:
        """The end-of-turn model judged ``speaker``'s turn complete at pause ``pause_id``:
        end it once its silence reaches ``at_silence_ms`` (now, or with a later frame), unless
        that pause is over."""
        det = self._hearing.detector(speaker)
        ev = det.end_now(pause_id, at_silence_ms=at_silence_ms) \
            if det is not None and not self._closed else None
        if det is not None and ev is not None:
            self._turn_events(det, [ev])

    def _speaking(self, speaker: str, speaking: bool) -> None:
        """Tell the vision side (if any) who talks: it samples faster while they do."""
        set_speaking = getattr(self._frames, "set_speaking", None)
        if set_speaking is not None:
            set_speaking(speaker, speaking)

    def push_text(self, speaker: str, text: str) -> None:
        text = text.strip()
        if self._closed or not text:
            return
        if len(text) > MAX_USER_TEXT_CHARS:
            self._log.warning("user_text_rejected", speaker=speaker, chars=len(text))
            return
        self._inbox.put_nowait(TextTurn(speaker=speaker, text=text, at_ms=monotonic_ms()))

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        push = getattr(self._frames, "push_video", None)
        if push is not None and not self._closed:
            push(speaker, source, frame)

    def speaker_left(self, speaker: str) -> None:
        self._interims.forget(speaker)
        self._pauses.forget(speaker)
        self._hearing.forget(speaker)

    # -- Conversation: lifecycle -------------------------------------------------------------

    async def run(self) -> str:
        if self._running or self._closed:
            raise RuntimeError("a VoicePipeline runs once")
        self._running = True
        self._outbox.start()
        try:
            # The conversation owns the todo list, so it publishes it on join (and on every
            # change); the participant has already published agent_status.
            self._publish(todo_list(self._tools.board.items))
            line = self._cfg.recovery_line if self._after_failover else self._persona.greeting
            if line:
                if self._audience is not None and not self._audience.is_set():
                    # not into an empty room: the participant sets it once someone can hear
                    # (and ends the job if nobody comes within room.participant_wait)
                    await self._audience.wait()
                self._launch(LineTurn(text=line, kind="voice",
                                       remember=not self._after_failover))
            else:
                self._set_status("listening", None)
            history = self._context.history
            if self._after_failover and history and history[-1].role in ("user", "tool"):
                self._inbox.put_nowait(ContinueTurn())
            while self._end_reason is None:
                turn = await self._inbox.get()
                if turn is not None and self._end_reason is None:
                    if self._llm is None or isinstance(turn, ContinueTurn):
                        await self._wait_turn()  # every turn in order (the recovery line too)
                    else:
                        await self._stop_turn()
                    self._launch(turn)
            await self._wait_turn()
            self._log.info("conversation_ended", reason=self._end_reason)
            return self._end_reason
        finally:
            self._closed = True
            await self._stop_turn()
            await self._interrupts.aclose()
            await self._pauses.aclose()
            await self._interims.aclose()
            await self._outbox.aclose()

    def busy(self) -> bool:
        """A user is speaking, or the agent is thinking or speaking."""
        return self._agent_active() or self._hearing.anyone_speaking()

    async def say(self, text: str, *, kind: str = "vision") -> bool:
        """Speak ``text`` as an agent turn. False when it could not (busy, ended, interrupted)."""
        text = text.strip()
        if not text or self._closed or not self._running or self._end_reason or self.busy():
            return False
        turn_kind = LINE_KINDS.get(kind, "vision")
        task = self._launch(LineTurn(text=text, kind=turn_kind))
        try:
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not current_task_cancelling():
                return False  # the line was interrupted
            if self._turn_task is task:
                await self._stop_turn()
            raise
        return outcome == "answered"

    def record(self) -> dict[str, Any]:
        return {
            **self._journal.record(),
            "speculation": dict(self._pauses.speculations),
            "speculative_answers": dict(self._pauses.answers),
            "end_of_turn": dict(self._pauses.ends),
            "end_reason": self._end_reason,
        }

    # -- turns -------------------------------------------------------------------------------

    def _launch(self, turn: AgentTurn) -> asyncio.Task[ReplyOutcome | None]:
        task = asyncio.create_task(self._run_turn(turn), name="pipeline-turn")
        self._turn_task = task
        return task

    async def _run_turn(self, turn: AgentTurn) -> ReplyOutcome | None:
        reply: Reply | None = None
        trace: TurnTrace | None = None
        try:
            if isinstance(turn, LineTurn):
                trace = TurnTrace(kind=turn.kind)
                reply = self._new_reply(trace)
                await reply.run_line(turn.text, remember=turn.remember)
            elif isinstance(turn, TextTurn):
                trace = TurnTrace(kind="text", origin_ms=turn.at_ms, speaker=turn.speaker)
                if self._llm is not None:
                    self._set_status("thinking", None)
                self._publish(transcript_msg(
                    text=turn.text, is_final=True, participant_id=turn.speaker,
                    transcript_id=new_id("TR"),
                ))
                self._user_said(turn.speaker, turn.text, trace)
                if self._llm is not None:
                    reply = self._new_reply(trace)
                    await reply.run_model()
            elif isinstance(turn, ContinueTurn):
                trace = TurnTrace(kind="voice")
                if self._llm is not None:
                    self._set_status("thinking", None)
                    reply = self._new_reply(trace)
                    await reply.run_model()
            else:
                trace = TurnTrace(kind="voice", origin_ms=turn.end_of_speech_ms,
                                  speaker=turn.speaker)
                reply = await self._voice_turn(turn, trace)
        except Exception:  # a bug of ours: log it, count it, keep the call alive
            self._log.exception("turn_crashed")
            if reply is not None:
                reply.outcome = "failed"
            else:
                self._failures += 1
        finally:
            if reply is None and self._reply is not None and self._reply.trace is trace:
                # cancelled (the next turn) inside _voice_turn: its reply ran all the same
                reply = self._reply
            self._after_turn(reply, trace)
        return reply.outcome if reply is not None else None

    async def _voice_turn(self, turn: TurnEnded, trace: TurnTrace) -> Reply | None:
        trace.mark("end_of_speech", turn.end_of_speech_ms)
        trace.mark("turn_decided", turn.decided_ms)
        if self._llm is not None:
            self._set_status("thinking", None)
        pcm = turn.pcm
        carried = self._carry.pop(turn.speaker, None)
        speculative = self._pauses.take_transcript(turn)
        if carried is not None:
            pcm = np.concatenate((carried, pcm))
            self._heard.pop(turn.transcript_id, None)  # neither has heard the carried words
            if speculative is not None:
                speculative.cancel()  # it has not heard the carried words
                speculative = None
        try:
            if turn.transcript_id in self._heard:
                result = self._heard.pop(turn.transcript_id)
            elif speculative is not None:
                result = await speculative
            else:
                result = await self._stt.transcribe(pcm, language=self._persona.language)
        except asyncio.CancelledError:
            # Interrupted before the words were known: they join the speaker's next turn.
            if speculative is not None:
                speculative.cancel()
            self._carry[turn.speaker] = pcm
            raise
        except Exception as e:  # noqa: BLE001 (ProviderError, or a vendor bug: never fatal)
            err = e if isinstance(e, ProviderError) else unexpected(e, self._stt.name)
            reply = self._new_reply(trace)
            await reply.run_failure("stt", err)
            return reply
        trace.mark("final_transcript")
        text = result.text.strip()
        if text or self._interims.take_sent(turn.transcript_id):
            self._publish(transcript_msg(
                text=text, is_final=True, participant_id=turn.speaker,
                transcript_id=turn.transcript_id, confidence=result.confidence,
            ))
        if not text:
            if self._unanswered and self._llm is not None:
                # The user's sound stopped the agent before it said anything, and it was not
                # words: a false interruption after all. Answer the turn it had been thinking on.
                self._false_interruption(turn.speaker, turn.speech_ms)
                reply = self._new_reply(trace)
                await reply.run_model()
                return reply
            trace.outcome = "empty"
            return None
        self._user_said(turn.speaker, text, trace)
        if self._llm is None:
            return None
        reply = self._new_reply(trace, self._pauses.take_draft(turn, trace))
        await reply.run_model()
        return reply

    def _user_said(self, speaker: str, text: str, trace: TurnTrace) -> None:
        images: list[ImagePart] = []
        if self._frames is not None and self._llm is not None and self._llm.supports_vision:
            try:
                images = list(self._frames.latest_images(speaker))
            except Exception as e:  # noqa: BLE001 (vision is optional; the turn goes on)
                self._log.warning("frames_failed", speaker=speaker, error=str(e))
        self._context.add_user(text, speaker=speaker, images=images)
        self._journal.user_said(speaker, text, trace.turn_id)

    def _new_reply(self, trace: TurnTrace, draft: Draft | None = None) -> Reply:
        reply = Reply(env=self._env, trace=trace, draft=draft)
        self._reply = reply
        return reply

    def _after_turn(self, reply: Reply | None, trace: TurnTrace | None) -> None:
        if reply is not None:
            self._unanswered = reply.used_model and reply.interrupted and not reply.spoken
            if reply.outcome == "failed":
                self._failures += 1
                self._journal.counters["provider_failures"] += 1
            elif reply.outcome != "interrupted":
                self._failures = 0
            if reply.spoken:
                self._journal.agent_said(reply.spoken, interrupted=reply.interrupted,
                                         turn_id=reply.trace.turn_id)
        elif trace is not None and "final_transcript" in trace.stages:
            trace.mark("done")  # transcription-only turn: the trace ends here
            trace.observe()
            self._publish(trace.message())
        if trace is not None and ("done" in trace.stages or reply is not None):
            self._journal.turn(trace)
        if self._reply is reply:
            self._reply = None
        if reply is not None and self._interrupts.held is reply:
            self._interrupts.release()
        if self._tools.handoff is not None:
            self._end("handoff")
        elif self._tools.end_call_reason is not None:
            self._end("call_ended")
        elif self._failures >= self._cfg.max_consecutive_failures:
            self._end("provider_failures")
        if self._end_reason is None and not self._closed:
            note = None
            if reply is not None and reply.outcome == "failed":
                note = f"{reply.failed_step}_failed"
            self._set_status("listening", note)
        self._journal.save()

    def _end(self, reason: str) -> None:
        if self._end_reason is None:
            self._end_reason = reason
            self._inbox.put_nowait(None)

    def _agent_active(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    async def _wait_turn(self) -> None:
        task = self._turn_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stop_turn(self) -> None:
        """Interrupt the agent's turn in flight (if any) and wait until it is gone."""
        task = self._turn_task
        if task is None or task.done():
            return
        if self._reply is not None:
            self._reply.interrupt()
        await cancel_and_wait(task)

    # -- publishing --------------------------------------------------------------------------

    def _publish(self, message: OutboundMessage) -> None:
        self._outbox.put(message)

    def _set_status(self, status: AgentState, message: str | None) -> None:
        if status != self._status or message is not None:
            self._status = status
            self._publish(agent_status(status, message))
