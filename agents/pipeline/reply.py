"""One agent turn: the model's answer (with tool rounds), spoken as it streams.

A :class:`Reply` runs inside a task the voice pipeline owns; barge-in calls :meth:`interrupt`
(synchronous: the queued audio is cleared at once) and then cancels the task. Whatever way the
turn ends, :meth:`_finish` publishes the agent's final transcript (cut at what was heard when
interrupted), commits the assistant text to the chat context and closes the trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from agents.io import AudioOutput
from agents.messages import AgentState, OutboundMessage, handoff, new_id, todo_list
from agents.messages import transcript_chunk as transcript_msg
from agents.pipeline.aio import cancel_and_wait
from agents.pipeline.config import PipelineConfig
from agents.pipeline.context import ChatContext
from agents.pipeline.extras import TurnExtras
from agents.pipeline.speculation import Draft, build_request
from agents.pipeline.speech import FIRST_CLAUSE_CHARS, SentenceSplitter, SpeechOut
from agents.pipeline.trace import PROVIDER_FAILURES, TurnTrace
from agents.providers.base import LLM, TTS, TextDelta, ToolCall, ToolCallEvent
from agents.providers.errors import ProviderError
from agents.tools import AgentTools

log = structlog.get_logger("agents.pipeline.reply")

ReplyOutcome = Literal["answered", "interrupted", "failed", "call_ended", "handoff"]
Step = Literal["stt", "llm", "tts"]


_Body = Callable[["asyncio.Queue[str | None]"], Coroutine[Any, Any, None]]


class StepFailed(Exception):
    """A provider step failed for this turn (after its own retries)."""

    def __init__(self, step: Step, error: ProviderError) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error


@dataclass(kw_only=True, slots=True)
class ReplyEnv:
    """What every reply of one conversation shares."""

    config: PipelineConfig
    audio: AudioOutput
    publish: Callable[[OutboundMessage], None]
    set_status: Callable[[AgentState, str | None], None]
    context: ChatContext
    tools: AgentTools
    agent_identity: str
    llm: LLM | None
    tts: TTS | None
    voice: str | None
    extras: TurnExtras = field(default_factory=TurnExtras)
    saved: Callable[[], None] = lambda: None
    """Called after every tool round (the conversation checkpoints itself)."""


class Reply:
    """One agent turn. Make one per turn; run exactly one of its ``run_*`` methods."""

    def __init__(self, *, env: ReplyEnv, trace: TurnTrace, draft: Draft | None = None) -> None:
        self.env = env
        self.trace = trace
        self.transcript_id = new_id("TR")
        self.outcome: ReplyOutcome = "answered"
        self.failed_step: Step | None = None
        self.spoken: str = ""
        self.used_model = False
        self._interrupted = False
        self._text_parts: list[str] = []  # every sentence the agent produced this turn
        self._committed = 0  # of _text_parts, already in the chat context
        self._speech: SpeechOut | None = None
        self._draft = draft  # the model's answer started at the pause the turn ended in
        self._draft_open = draft is not None  # for the first model request only
        if env.tts is not None:
            self._speech = SpeechOut(
                tts=env.tts, audio=env.audio, voice=env.voice,
                on_first_audio=self._on_first_audio, on_sentence=self._on_sentence_audible,
                primed=draft.take_speech if draft is not None else None,
            )
        self._audible: list[str] = []
        self._finished = False
        self._remember = True
        self._knowledge = ""  # this turn's retrieved passages, for the system message

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    # -- control from the pipeline ----------------------------------------------------------

    def interrupt(self) -> None:
        """Barge-in: stop the audio now (synchronous). The owner then cancels the task."""
        if self._interrupted or self._finished:
            return
        self._interrupted = True
        self.outcome = "interrupted"
        self.trace.interrupted = True
        self.trace.mark("interrupted")
        if self._speech is not None:
            self._speech.stop()

    @property
    def paused(self) -> bool:
        return self._speech is not None and self._speech.paused

    def pause(self) -> bool:
        """The caller may be interrupting: silence the answer now, keeping the unheard rest for
        :meth:`resume` (synchronous). False when there is no speech to pause."""
        if self._interrupted or self._finished or self._speech is None:
            return False
        self._speech.pause()
        return True

    async def resume(self) -> None:
        """A false interruption: play on from where the caller stopped hearing."""
        if self._speech is not None and not self._interrupted:
            await self._speech.resume()

    # -- the turn bodies --------------------------------------------------------------------

    async def run_model(self) -> ReplyOutcome:
        """Ask the model (tool rounds included) and speak its answer as it streams."""
        self.used_model = True
        return await self._run(self._model_body)

    async def run_line(self, text: str, *, remember: bool = True) -> ReplyOutcome:
        """Speak a fixed line (greeting, vision remark) as an agent turn; without ``remember``
        it stays out of the chat history (the recovery line after failover: the model goes on
        from the caller's words, not from it)."""
        self._remember = remember

        async def body(out: asyncio.Queue[str | None]) -> None:
            self._add_sentence(text, out)

        return await self._run(body)

    async def run_failure(self, step: Step, error: ProviderError) -> ReplyOutcome:
        """A step before the model failed (speech recognition): say the fallback line."""
        self._note_failure(step, error)
        await self._run(self._fallback_body)
        return self.outcome

    # -- internals --------------------------------------------------------------------------

    async def _run(self, body: _Body) -> ReplyOutcome:
        try:
            try:
                await self._speak_through(body)
            except StepFailed as e:
                self._note_failure(e.step, e.error)
                await self._speak_through(self._fallback_body)
            await self._wait_playout()
        except StepFailed as e:  # the fallback line itself could not be spoken
            log.warning("fallback_not_spoken", step=e.step, error=str(e.error))
            self._note_failure(e.step, e.error)
            self._on_sentence_audible(self.env.config.fallback_line)  # as text, at least
        finally:
            if self._draft is not None:
                await self._draft.aclose()
                self.trace.speculation = self._draft.status
            self._finish()
        return self.outcome

    async def _speak_through(self, body: _Body) -> None:
        """Run ``body`` producing sentences while a named task speaks them in order. If the
        producer fails, what it produced is still spoken before its error is raised."""
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.create_task(self._speak_loop(sentences), name="reply-speaker")
        producer = asyncio.create_task(body(sentences), name="reply-producer")
        try:
            done, _ = await asyncio.wait({producer, speaker}, return_when=asyncio.FIRST_COMPLETED)
            if speaker in done and not producer.done():
                await cancel_and_wait(producer)
                speaker.result()  # raises the speech failure
            sentences.put_nowait(None)
            await speaker
            producer.result()
        finally:
            await cancel_and_wait(producer, speaker)

    async def _speak_loop(self, sentences: asyncio.Queue[str | None]) -> None:
        if self._speech is None:  # text answers: each sentence goes out as it comes
            while (sentence := await sentences.get()) is not None:
                self._on_sentence_audible(sentence)
            return
        try:
            await self._speech.play(sentences)
        except ProviderError as e:
            raise StepFailed("tts", e) from e
        except Exception as e:  # noqa: BLE001 (a vendor bug must not end the call)
            raise StepFailed("tts", unexpected(e, self._speech.provider)) from e

    def _add_sentence(self, sentence: str, out: asyncio.Queue[str | None]) -> None:
        self._text_parts.append(sentence)
        out.put_nowait(sentence)

    async def _retrieve(self) -> None:
        """Approved knowledge for the latest user message, before the model is asked."""
        retriever = self.env.extras.knowledge
        users = [m for m in self.env.context.history if m.role == "user"]
        if retriever is None or not users:
            return
        query = users[-1].content
        try:
            found = await self._draft.knowledge(query) if self._draft is not None else None
            found = found if found is not None else await retriever.retrieve(query)
        except Exception as e:  # noqa: BLE001 (knowledge is an aid: the turn goes on without)
            log.warning("knowledge_retrieval_failed", turn_id=self.trace.turn_id,
                        error_type=type(e).__name__, error=str(e)[:200])
            return
        self._knowledge = found.context()
        self.trace.knowledge = found.summary()

    async def _model_body(self, out: asyncio.Queue[str | None]) -> None:
        env = self.env
        assert env.llm is not None
        await self._retrieve()
        extra = env.extras.tools
        for _ in range(env.config.max_tool_rounds):
            calls = await self._model_round(env.llm, out)
            if not calls:
                return
            results: dict[str, str] = {}
            ended = False
            for call in calls:
                if extra is not None and extra.handles(call.name):
                    results[call.id] = await extra.call(call)
                    continue
                outcome = env.tools.execute(call)
                results[call.id] = outcome.result
                if outcome.todo_changed:
                    env.publish(todo_list(env.tools.board.items))
                if outcome.handoff is not None and self.outcome != "handoff":
                    reason, summary = outcome.handoff
                    env.publish(handoff(reason=reason, summary=summary))
                    self.outcome = "handoff"
                    ended = True
                elif outcome.end_call is not None and self.outcome != "handoff":
                    self.outcome = "call_ended"
                    ended = True
            round_text = " ".join(self._text_parts[self._committed :])
            env.context.add_tool_round(text=round_text, calls=calls, results=results)
            self._committed = len(self._text_parts)
            env.saved()
            if ended:
                if not self._text_parts:
                    line = (
                        env.config.handoff_line if self.outcome == "handoff"
                        else env.config.goodbye_line
                    )
                    self._add_sentence(line, out)
                return
        log.warning("tool_rounds_exhausted", turn_id=self.trace.turn_id)

    async def _model_round(self, llm: LLM, out: asyncio.Queue[str | None]) -> list[ToolCall]:
        env = self.env
        request = build_request(env, env.context.messages(
            todo_context=env.tools.render_context(), knowledge_context=self._knowledge
        ))
        # Only the reply's very first piece may be cut at a clause, to start speaking sooner.
        splitter = SentenceSplitter(first_min_chars=0 if self._text_parts else FIRST_CLAUSE_CHARS)
        calls: list[ToolCall] = []
        stream = None
        if self._draft is not None and self._draft_open:
            self._draft_open = False
            stream = await self._draft.take(request)  # None unless it asked exactly this
        if stream is None:
            stream = llm.chat(request)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    if event.text:
                        self.trace.mark("first_token")
                    for sentence in splitter.push(event.text):
                        self._add_sentence(sentence, out)
                elif isinstance(event, ToolCallEvent):
                    self.trace.mark("first_token")
                    calls.append(event.call)
        except ProviderError as e:
            raise StepFailed("llm", e) from e
        except Exception as e:  # noqa: BLE001 (a vendor bug must not end the call)
            raise StepFailed("llm", unexpected(e, llm.name)) from e
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        for sentence in splitter.flush():
            self._add_sentence(sentence, out)
        return calls

    async def _fallback_body(self, out: asyncio.Queue[str | None]) -> None:
        self._add_sentence(self.env.config.fallback_line, out)

    def _note_failure(self, step: Step, error: ProviderError) -> None:
        PROVIDER_FAILURES.labels(step=step).inc()
        log.warning(
            "provider_step_failed", turn_id=self.trace.turn_id, step=step,
            provider=error.provider, error_type=type(error).__name__, error=error.message,
        )
        self.outcome = "failed"
        self.failed_step = step
        self.trace.outcome = "failed"

    async def _wait_playout(self) -> None:
        speech = self._speech
        while speech is not None:
            await speech.wait_open()  # a paused answer is not over: it may resume
            if speech.pushed_seconds > 0:
                await self.env.audio.wait_for_playout()
            if not speech.paused:
                return

    def _on_first_audio(self, queued_ahead: float) -> None:
        self.trace.mark("first_audio")
        first = self.trace.stages["first_audio"] + self.trace.origin_ms
        self.trace.mark("playout_start", first + queued_ahead * 1000.0)
        self.env.set_status("speaking", None)

    def _on_sentence_audible(self, sentence: str) -> None:
        self._audible.append(sentence)
        self.env.publish(transcript_msg(
            text=" ".join(self._audible), is_final=False,
            participant_id=self.env.agent_identity, transcript_id=self.transcript_id,
        ))

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        env = self.env
        if self._speech is not None:
            spoken = self._speech.spoken_text() if self._interrupted else " ".join(self._audible)
        else:
            spoken = " ".join(self._audible)
        self.spoken = spoken
        if self._audible or spoken:
            env.publish(transcript_msg(
                text=spoken, is_final=True, participant_id=env.agent_identity,
                transcript_id=self.transcript_id, interrupted=True if self._interrupted else None,
            ))
        # What is not yet in the context: the last round's text, cut when interrupted.
        pending = " ".join(self._text_parts[self._committed :])
        if self._interrupted:
            heard_before = " ".join(self._text_parts[: self._committed])
            pending = _after_prefix(spoken, heard_before) if heard_before else spoken
        if self._remember:
            env.context.add_assistant(pending)
        self.trace.mark("done")
        if self._interrupted:
            self.trace.outcome = "interrupted"
        elif self.outcome in ("call_ended", "handoff"):
            self.trace.outcome = self.outcome
        self.trace.observe()
        env.publish(self.trace.message())


def unexpected(error: Exception, provider: str) -> ProviderError:
    """An exception a provider should not have raised, as a non-retryable provider error."""
    log.error("provider_unexpected_error", provider=provider, error_type=type(error).__name__,
              exc_info=error)
    return ProviderError(f"unexpected {type(error).__name__}: {error}", provider=provider)


def _after_prefix(spoken: str, before: str) -> str:
    """``spoken`` minus the words of ``before`` it starts with (already in the context)."""
    words, prior = spoken.split(), before.split()
    return " ".join(words[len(prior) :]) if words[: len(prior)] == prior else ""
