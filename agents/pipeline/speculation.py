"""The model's answer, started at a pause while the turn is still being decided.

With ``turn.speculative_answer`` on, when the speculative final transcript of a pause
(:mod:`agents.pipeline.pauses`) is ready, a :class:`Draft` asks the model for its answer as if
the turn had ended there: the chat context plus the caller's words (not added to the context),
with approved knowledge retrieved for them. The model's events are buffered. With
``speculative_answer: speech`` the answer's first piece (the clause speech starts on) is also
synthesised, into a held buffer that nothing plays.

- The turn ends in that pause: the turn's :class:`~agents.pipeline.reply.Reply` takes the draft
  over. If its first model request is the draft's (same context, words, knowledge and tools), it
  reads the buffered events and then the rest of the same stream instead of asking again, and its
  speech starts on the held audio. If the request differs (the context changed meanwhile), the
  draft is dropped and the model is asked as usual (``mismatch``).
- The speaker goes on: the draft is cancelled with its pause (``dropped``).

Nothing here publishes, speaks or touches the chat context, and no tool runs speculatively: if
the model's speculative answer wants a tool, the draft stops (``tool``) and the turn, once
decided, asks the model afresh. A model failure while speculating (``failed``) is not the turn's:
the turn asks again under the usual retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from agents.pipeline.aio import cancel_and_wait
from agents.pipeline.extras import Retrieved
from agents.pipeline.speech import (
    FIRST_CLAUSE_CHARS,
    Chunks,
    Held,
    SentenceSplitter,
    synthesize_into,
)
from agents.providers.base import (
    ChatMessage,
    ChatRequest,
    LLMEvent,
    TextDelta,
    ToolCallEvent,
    Transcript,
)
from agents.providers.errors import ProviderError

if TYPE_CHECKING:
    from agents.pipeline.reply import ReplyEnv

DraftStatus = Literal["running", "kept", "dropped", "tool", "empty", "failed", "mismatch"]
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
Settled = Callable[[DraftStatus], None]

_Item = LLMEvent | ProviderError | None


def build_request(env: ReplyEnv, messages: list[ChatMessage]) -> ChatRequest:
    """The model request of a turn whose context messages are ``messages``."""
    extra = env.extras.tools
    return ChatRequest(
        messages=messages,
        tools=env.tools.specs() + (extra.specs() if extra is not None else []),
    )


class Draft:
    """One speculative answer, for the words of one pause. Owned by the pause work until a
    reply takes it (:meth:`take`); whoever holds it last calls :meth:`aclose`."""

    def __init__(
        self, *, env: ReplyEnv, speaker: str, transcript: asyncio.Task[Transcript],
        speech: bool, spawn: Spawn, log: Any, on_settled: Settled | None = None,
    ) -> None:
        self._env = env
        self._speaker = speaker
        self._transcript = transcript
        self._speech = speech and env.tts is not None
        self._log = log
        self.status: DraftStatus = "running"
        self._on_settled = on_settled
        self._ready = asyncio.Event()  # set once the request is known, or the draft is over
        self._query = ""
        self._found: Retrieved | None = None
        self._request: ChatRequest | None = None
        self._events: asyncio.Queue[_Item] = asyncio.Queue()
        self._taken = False
        self._first: tuple[str, Chunks] | None = None  # the held first piece and its audio
        self._held = False  # the first piece was found (only it is synthesised ahead)
        self._synth: asyncio.Task[None] | None = None
        self._spawn = spawn
        # The context as the turn would find it now: if it changes before the turn ends, the
        # turn's request differs and the draft is not used.
        self._context = env.context.copy()
        self._todo = env.tools.render_context()
        self._task = spawn(self._run(), f"pipeline-speculative-answer-{speaker}")

    @property
    def kept(self) -> bool:
        return self.status == "kept"

    # -- the reply's side ------------------------------------------------------------------

    async def knowledge(self, query: str) -> Retrieved | None:
        """What the draft retrieved for ``query`` (None: it did not, or for other words)."""
        await self._ready.wait()
        return self._found if self._query == query and self.status == "running" else None

    async def take(self, request: ChatRequest) -> AsyncIterator[LLMEvent] | None:
        """The model's answer to ``request`` (the turn's first), if the draft asked exactly
        that: its buffered events, then the rest of its stream. None otherwise (the draft is
        then dropped)."""
        await self._ready.wait()
        if self.status != "running":
            return None
        if self._request != request:
            self._stop("mismatch")
            return None
        self._settle("kept")
        self._log.debug("speculative_answer_kept", speaker=self._speaker,
                        buffered=self._events.qsize())
        return self._replay()

    def take_speech(self, text: str) -> Held | None:
        """The held audio of the answer's first piece, if that piece is ``text`` (once), and
        the task still making it."""
        first = self._first
        if not self.kept or first is None or first[0] != text or self._synth is None:
            return None
        self._first = None
        return first[1], self._synth

    def cancel(self) -> None:
        """Stop now (synchronous): undecided, the draft is dropped. Its tasks end in
        :meth:`aclose` or in their owner's."""
        self._stop("dropped")

    async def aclose(self) -> None:
        if self.status == "running":
            self._settle("dropped")
        await cancel_and_wait(self._task, self._synth)

    # -- internals ---------------------------------------------------------------------------

    def _settle(self, status: DraftStatus) -> None:
        """The draft's fate, once (later calls change nothing)."""
        if self.status != "running":
            return
        self.status = status
        if self._on_settled is not None:
            self._on_settled(status)

    def _stop(self, status: DraftStatus) -> None:
        self._settle(status)
        self._ready.set()
        self._task.cancel()
        if self._synth is not None:
            self._synth.cancel()

    async def _replay(self) -> AsyncIterator[LLMEvent]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def _run(self) -> None:
        try:
            await self._answer()
        finally:
            self._ready.set()
            self._events.put_nowait(None)

    async def _answer(self) -> None:
        env = self._env
        assert env.llm is not None
        try:
            # shielded: the turn may still need the transcript when the draft is dropped
            result = await asyncio.shield(self._transcript)
        except asyncio.CancelledError:
            if self._transcript.cancelled():
                self._settle("dropped")
                return
            raise
        except Exception:  # noqa: BLE001 (the turn reports a failed transcript, not us)
            self._settle("failed")
            return
        text = result.text.strip()
        if not text or result.degenerate:
            self._settle("empty")
            return
        retriever = env.extras.knowledge
        if retriever is not None:
            try:
                self._found = await retriever.retrieve(text)
            except Exception:  # noqa: BLE001 (the turn retrieves again and reports it)
                self._settle("failed")
                return
            self._query = text
        self._context.add_user(text, speaker=self._speaker)
        self._request = build_request(env, self._context.messages(
            todo_context=self._todo,
            knowledge_context=self._found.context() if self._found is not None else "",
        ))
        self._ready.set()
        await self._stream(self._request)

    async def _stream(self, request: ChatRequest) -> None:
        env = self._env
        assert env.llm is not None
        splitter = SentenceSplitter(first_min_chars=FIRST_CLAUSE_CHARS)
        stream = env.llm.chat(request)
        try:
            async for event in stream:
                if isinstance(event, ToolCallEvent) and not self.kept:
                    self._log.debug("speculative_answer_wants_tool", speaker=self._speaker)
                    self._stop_synth()
                    self._settle("tool")
                    return
                if isinstance(event, TextDelta) and self._speech and not self._held:
                    pieces = splitter.push(event.text)
                    if pieces:
                        self._hold_speech(pieces[0])
                self._events.put_nowait(event)
        except ProviderError as e:
            if not self.kept:
                self._settle("failed")
                return
            self._events.put_nowait(e)  # the turn's own model call failed: the reply says so
            return
        except Exception as e:  # noqa: BLE001 (a vendor bug: as a failure, like the reply)
            from agents.pipeline.reply import unexpected

            if not self.kept:
                self._settle("failed")
                return
            self._events.put_nowait(unexpected(e, env.llm.name))
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if self._speech and not self._held:
            pieces = splitter.flush()
            if pieces:
                self._hold_speech(pieces[0])

    def _hold_speech(self, text: str) -> None:
        chunks: Chunks = asyncio.Queue()
        self._held = True
        self._first = (text, chunks)
        self._synth = self._spawn(
            self._synthesize(text, chunks), f"pipeline-speculative-speech-{self._speaker}"
        )

    def _stop_synth(self) -> None:
        self._first = None
        if self._synth is not None:
            self._synth.cancel()

    async def _synthesize(self, text: str, chunks: Chunks) -> None:
        tts = self._env.tts
        assert tts is not None
        await synthesize_into(tts, text, self._env.voice, chunks)
