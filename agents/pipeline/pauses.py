"""What runs while a speaker pauses: the end-of-turn decision and the speculative transcript.

At a pause (:class:`~agents.pipeline.turns.Paused`, reported once per stage: the transcript's at
``speculate_ms``, the model's ``look_ahead_ms`` before ``pause_ms`` and each ``recheck_ms``)
two things may start, each in a task this object owns:

- with ``turn.detector: smart-turn``, the end-of-turn model scores the utterance so far, its
  silence extended to the look's (it is asked ``look_ahead_ms`` before the look); when it judges
  the turn complete, ``on_complete(speaker, pause_id, at_silence_ms)`` asks the pipeline to end the
  turn when its silence reaches the look (the detector refuses if the speaker has spoken again
  since, and drops the end if they do before). When it judges it incomplete, the next look
  (``recheck_ms``) asks again, on the longer silence. If the model fails, the turn ends at
  ``silence_ms`` instead, as with the silence detector;
- with ``turn.speculative``, the final transcript of the utterance so far. When the turn ends in
  that same pause, :meth:`take_transcript` hands the running transcription to the turn, which
  then waits only for what is left of it; when the speaker goes on (:meth:`resumed`) or the turn
  is dropped, it is cancelled and nothing of it is published;
- with ``turn.speculative_answer`` too (and the agent idle), the model's answer to that
  transcript, as a :class:`~agents.pipeline.speculation.Draft`: kept with the transcript, for the
  turn's reply to take over (:meth:`take_draft`), and cancelled with it.

Nothing here speaks, publishes or calls tools: speculation only ever computes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.pipeline.aio import cancel_and_wait
from agents.pipeline.config import TurnConfig
from agents.pipeline.segments import Heard, Segments
from agents.pipeline.speculation import Draft, DraftStatus
from agents.pipeline.trace import TurnTrace
from agents.pipeline.turns import Paused, TurnEnded
from agents.providers.base import STT, EndOfTurnModel, Transcript, monotonic_ms
from agents.providers.errors import ProviderError

if TYPE_CHECKING:
    from agents.pipeline.reply import ReplyEnv

CompleteCallback = Callable[[str, int, float], None]
"""``(speaker, pause_id, at_silence_ms)``: end that turn once its silence reaches
``at_silence_ms`` (now, if it has), unless it is no longer in that pause."""

_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*\s*$")
"""A transcript that ends a sentence (its last words closed by . ! ? or an ellipsis)."""


@dataclass(slots=True)
class _Pause:
    transcript_id: str
    pause_id: int
    samples: int
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    transcript: asyncio.Task[Transcript] | None = None
    draft: Draft | None = None
    ending: tuple[float, str] | None = None
    """The end asked of this pause: at what silence (ms), and by what (see ``ends``)."""


class PauseWork:
    def __init__(
        self,
        *,
        config: TurnConfig,
        stt: STT,
        end_of_turn: EndOfTurnModel | None,
        language: str | None,
        on_complete: CompleteCallback,
        log: Any,
        answers: ReplyEnv | None = None,
        idle: Callable[[], bool] = lambda: True,
        segments: Segments | None = None,
    ) -> None:
        self._cfg = config
        self._stt = stt
        self._segments = segments or Segments(stt=stt, language=language)
        self._eot = end_of_turn if config.detector == "smart-turn" else None
        self._language = language
        self._on_complete = on_complete
        self._log = log
        self._pauses: dict[str, _Pause] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.speculations = {"started": 0, "kept": 0, "dropped": 0}
        self.ends: dict[str, int] = {}
        """Turns ended here, by how: ``look_0`` (the model at pause_ms), ``look_1``... (at
        each recheck_ms), ``sentence`` (sentence_end_ms), ``fallback`` (the model failed)."""
        self._answers = answers if config.speculative_answer != "off" else None
        self._idle = idle
        self.answers: dict[str, int] = {"started": 0}
        """Speculative answers: started, and how each ended (kept, dropped, tool, ...)."""
        self._kept: dict[str, Draft] = {}  # by speaker: drafts of ended turns, for their reply
        self._dropped: dict[str, str] = {}  # by speaker: the utterance whose draft was dropped

    def paused(self, ev: Paused) -> None:
        """A stage of a pause: ``ev.speculate`` starts the transcript (and the answer),
        ``ev.decide`` asks the end-of-turn model; a later stage of the same pause adds to what
        the first one started."""
        pause = self._pauses.get(ev.speaker)
        if pause is None or (pause.transcript_id, pause.pause_id) != (ev.transcript_id,
                                                                       ev.pause_id):
            self.cancel(ev.speaker)
            pause = _Pause(transcript_id=ev.transcript_id, pause_id=ev.pause_id,
                           samples=ev.pcm.size)
            self._pauses[ev.speaker] = pause
        if ev.decide and self._eot is not None:
            pause.tasks.append(self._spawn(
                self._decide(ev), f"pipeline-end-of-turn-{ev.speaker}"
            ))
        if ev.speculate and self._cfg.speculative:
            pause.transcript = self._spawn(
                self._segments.transcribe(ev.speaker, ev.transcript_id, ev.pcm),
                f"pipeline-speculative-stt-{ev.speaker}",
            )
            pause.tasks.append(pause.transcript)
            self.speculations["started"] += 1
            pause.draft = self._draft(ev.speaker, pause.transcript)

    def resumed(self, speaker: str) -> None:
        """The speaker went on: what the pause started is moot, but a transcript of the
        utterance up to the pause, if finished, is where the next one starts."""
        pause = self._pauses.get(speaker)
        task = pause.transcript if pause is not None else None
        if pause is not None and task is not None and task.done() and not task.cancelled() \
                and task.exception() is None:
            self._segments.commit(speaker, Heard(pause.transcript_id, pause.samples,
                                                 task.result()))
        self.cancel(speaker)

    def ended(self, ev: TurnEnded) -> None:
        """The turn ``ev`` ended: counted in :attr:`ends` when it was here that it was ended."""
        pause = self._pauses.get(ev.speaker)
        if pause is not None and pause.ending is not None and ev.pause_id == pause.pause_id \
                and ev.transcript_id == pause.transcript_id:
            how = pause.ending[1]
            self.ends[how] = self.ends.get(how, 0) + 1

    def take_transcript(self, ev: TurnEnded) -> asyncio.Task[Transcript] | None:
        """The speculative transcription for the turn ``ev`` when it covers all of the turn's
        speech (the turn ended in the pause it started at), else None. The caller then owns the
        task: it awaits or cancels it. Whatever else the pause started is cancelled."""
        pause = self._pauses.pop(ev.speaker, None)
        if pause is None:
            return None
        task = pause.transcript
        kept = (
            task is not None and ev.pause_id == pause.pause_id
            and ev.transcript_id == pause.transcript_id
        )
        me = asyncio.current_task()  # the end-of-turn task, when it ended the turn
        for t in pause.tasks:
            if t is not me and not (kept and t is task):
                t.cancel()
        if task is not None:
            self.speculations["kept" if kept else "dropped"] += 1
        if pause.draft is not None:
            if kept:
                self._kept[ev.speaker] = pause.draft
            else:
                self._drop(ev.speaker, pause.transcript_id, pause.draft)
        return task if kept else None

    def take_draft(self, ev: TurnEnded, trace: TurnTrace) -> Draft | None:
        """The speculative answer to the turn ``ev`` (kept with its transcript), for its reply,
        which then owns it. Notes in ``trace`` that the turn's speculation was dropped when
        it was (the speaker went on) and none is left."""
        draft = self._kept.pop(ev.speaker, None)
        dropped = self._dropped.pop(ev.speaker, None)
        if draft is None and dropped == ev.transcript_id:
            trace.speculation = "dropped"
        return draft

    def cancel(self, speaker: str) -> None:
        stale = self._kept.pop(speaker, None)  # a turn that ended without a reply to take it
        if stale is not None:
            stale.cancel()
        pause = self._pauses.pop(speaker, None)
        if pause is None:
            return
        for t in pause.tasks:
            t.cancel()
        if pause.transcript is not None:
            self.speculations["dropped"] += 1
        if pause.draft is not None:
            self._drop(speaker, pause.transcript_id, pause.draft)

    def forget(self, speaker: str) -> None:
        self.cancel(speaker)
        self._segments.forget(speaker)

    async def aclose(self) -> None:
        self._pauses.clear()
        self._kept.clear()
        await cancel_and_wait(*self._tasks)

    def _draft(self, speaker: str, transcript: asyncio.Task[Transcript]) -> Draft | None:
        env = self._answers
        if env is None or env.llm is None or not self._idle():
            return None  # no model, or the agent's own turn will change the context first
        self.answers["started"] += 1
        return Draft(
            env=env, speaker=speaker, transcript=transcript, spawn=self._spawn, log=self._log,
            speech=self._cfg.speculative_answer == "speech", on_settled=self._settled,
        )

    def _settled(self, status: DraftStatus) -> None:
        self.answers[status] = self.answers.get(status, 0) + 1

    def _drop(self, speaker: str, transcript_id: str, draft: Draft) -> None:
        draft.cancel()
        self._dropped[speaker] = transcript_id

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a speculative failure is its taker's business

    async def _decide(self, ev: Paused) -> None:
        assert self._eot is not None
        try:
            p = await self._eot.completion(ev.heard_at_look())
        except ProviderError as e:
            self._log.warning("end_of_turn_failed", speaker=ev.speaker, error=str(e),
                              look=ev.look)
            # Decide as the silence detector would: silence_ms after the end of speech.
            await asyncio.sleep(max(0.0, (ev.end_of_speech_ms + self._cfg.silence_ms
                                          - monotonic_ms()) / 1000.0))
            p, how, at = 1.0, "fallback", 0.0
        else:
            how, at = f"look_{ev.look}", ev.hears_ms
        self._log.debug("end_of_turn", speaker=ev.speaker, probability=round(p, 3),
                        pause_id=ev.pause_id, look=ev.look)
        pause = self._pauses.get(ev.speaker)
        if pause is None or pause.pause_id != ev.pause_id:
            return
        if p >= self._cfg.end_threshold:
            self._complete(ev, how, at)
        elif self._cfg.sentence_end_ms is not None and pause.transcript is not None \
                and ev.look == 0:
            await self._end_at_sentence(ev, pause.transcript, self._cfg.sentence_end_ms)

    async def _end_at_sentence(self, ev: Paused, transcript: asyncio.Task[Transcript],
                               after_ms: int) -> None:
        """The model judged the turn incomplete: if the pause's transcript ends a sentence,
        end the turn ``after_ms`` after the end of speech rather than at ``max_silence_ms`` (a
        model that misjudges a complete sentence then costs that, not seconds)."""
        me = asyncio.current_task()
        try:
            heard = await asyncio.shield(transcript)
        except ProviderError:
            return  # no words to judge by: the model's judgement stands
        except asyncio.CancelledError:
            if me is not None and me.cancelling():
                raise
            return  # the transcript was cancelled, not this task: as above
        if not _SENTENCE_END.search(heard.text):
            return
        await asyncio.sleep(max(0.0, (ev.end_of_speech_ms + after_ms - monotonic_ms()) / 1000.0))
        pause = self._pauses.get(ev.speaker)
        if pause is not None and pause.pause_id == ev.pause_id:
            self._log.debug("end_of_turn_at_sentence", speaker=ev.speaker, pause_id=ev.pause_id)
            self._complete(ev, "sentence", 0.0)

    def _complete(self, ev: Paused, how: str, at_silence_ms: float) -> None:
        pause = self._pauses.get(ev.speaker)
        if pause is None or pause.pause_id != ev.pause_id:
            return
        if pause.ending is None or at_silence_ms < pause.ending[0]:
            pause.ending = (at_silence_ms, how)  # before: the end may come at once
        self._on_complete(ev.speaker, ev.pause_id, at_silence_ms)
