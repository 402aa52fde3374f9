"""Barge-in over the agent's speech: pause at once, then stop or resume.

When the caller starts talking over the agent (``turn.barge_in_min_ms`` of speech at a mean voice
probability of at least ``turn.barge_in_confidence``), the agent's answer is paused at once: its
unheard audio is taken back from the room's queue. What happens next depends on the caller:

- their sound becomes a turn with words: a true interruption. The paused answer is stopped (its
  transcript cut at what was heard) and the caller's turn is answered. Over the paused agent a
  sound is a turn from ``turn.paused_min_speech_ms`` of speech (a quick "Wait."), not only from
  ``turn.min_speech_ms``;
- it was a noise (too short even for that, a turn without words, or only
  ``turn.backchannels``: "mm-hmm, okay") and no new speech starts within
  ``turn.false_interruption_timeout`` of the pause: a false interruption. The answer resumes
  where the caller stopped hearing it.

The words are checked with the turn's transcript (the speculative one from the pause when there
is one), in a task this object owns; so are the resume timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agents.pipeline.aio import TaskSet
from agents.pipeline.pauses import PauseWork
from agents.pipeline.reply import Reply
from agents.pipeline.turns import TurnEnded
from agents.providers.base import PCM, STT, Transcript, monotonic_ms
from agents.providers.errors import ProviderError

Heard = Callable[[TurnEnded, Transcript | None], None]
"""Called with a held turn's transcript (None: recognition failed, taken as words)."""


class Interruptions:
    def __init__(
        self, *, timeout_s: float, stt: STT, language: str | None, pauses: PauseWork,
        on_resumed: Callable[[Reply], None], log: Any,
    ) -> None:
        self._timeout_s = timeout_s
        self._stt = stt
        self._language = language
        self._pauses = pauses
        self._on_resumed = on_resumed
        self._log = log
        self.held: Reply | None = None
        self._held_at = 0.0
        self._resume: asyncio.Task[None] | None = None
        self._tasks = TaskSet()

    @property
    def enabled(self) -> bool:
        """Pausing needs somewhere to go back to: off when the timeout is 0."""
        return self._timeout_s > 0

    def hold(self, reply: Reply) -> bool:
        """Pause ``reply`` (the agent is speaking and the caller may be interrupting)."""
        if self.held is not None or not reply.pause():
            return False
        self.held = reply
        self._held_at = monotonic_ms()
        return True

    def release(self) -> Reply | None:
        """A true interruption (or the turn ended otherwise): no resume. Returns the reply."""
        reply, self.held = self.held, None
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        return reply

    def speech_started(self) -> None:
        """New speech: wait for what it is before resuming."""
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    def noise_ended(self) -> None:
        """The sound that paused the agent was not words: resume once the timeout has passed
        since the pause, unless speech starts again before."""
        if self.held is None:
            return
        self.speech_started()
        wait = max(0.0, self._held_at + self._timeout_s * 1000.0 - monotonic_ms()) / 1000.0
        self._resume = self._spawn(self._resume_after(self.held, wait), "pipeline-resume")

    def check(self, ev: TurnEnded, pcm: PCM, heard: Heard) -> None:
        """Find out whether the turn ``ev`` (over a held answer) has words; tell ``heard``."""
        self.speech_started()
        speculative = self._pauses.take_transcript(ev)
        self._spawn(self._check(ev, pcm, speculative, heard), "pipeline-interruption-check")

    async def aclose(self) -> None:
        self.held = None
        await self._tasks.cancel()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    async def _check(
        self, ev: TurnEnded, pcm: PCM, speculative: asyncio.Task[Transcript] | None,
        heard: Heard,
    ) -> None:
        result: Transcript | None
        try:
            if speculative is not None:
                result = await speculative
            else:
                result = await self._stt.transcribe(pcm, language=self._language)
        except ProviderError as e:
            self._log.warning("interruption_check_failed", speaker=ev.speaker, error=str(e))
            result = None
        except asyncio.CancelledError:
            if speculative is not None:
                speculative.cancel()
            raise
        heard(ev, result)

    async def _resume_after(self, reply: Reply, wait: float) -> None:
        await asyncio.sleep(wait)
        if self.held is not reply:
            return
        self.held = None
        self._resume = None
        await reply.resume()
        self._on_resumed(reply)
