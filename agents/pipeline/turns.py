"""Per-speaker turn detection driven by voice-activity probabilities.

A speaker's turn starts at the first analysis window whose speech probability reaches the
threshold, and ends after ``silence_ms`` of windows below the (slightly lower) release threshold.
Speech shorter than ``min_speech_ms`` in total is not a turn (a cough, a click). The detector keeps
the utterance's audio, with ``prefix_ms`` from before the onset, for speech recognition.

A pause (silence inside an utterance) is reported as :class:`Paused`, and speech after it as
:class:`Resumed`: at a pause the pipeline may start the final transcript speculatively (after
``speculate_ms``) and ask an end-of-turn model about each look (``pause_ms``, then each
``recheck_ms``), ``look_ahead_ms`` before the silence reaches it: the model hears the
utterance with its silence so far extended to the look's (:func:`extend_silence`), so its
answer is ready when the look comes. One pause is reported once per stage, with the same
``pause_id``; stages that fall on the same silence share one event. With
``detector: smart-turn`` the silence that ends a turn on its own is ``max_silence_ms`` (the model
ends complete turns earlier through :meth:`end_now`, at the silence of the look it judged); with
``silence`` it is ``silence_ms``.

``push`` is synchronous and cheap: it runs for every 10 ms frame of every speaker. ``feed`` is
its deferred twin for VAD streams that score windows in batches (:class:`BatchedVADStream`, e.g.
Silero's): each frame's events go to the ``on_events`` callback, in order, with the same
decisions ``push`` would take, at most one event loop iteration later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from agents.messages import new_id
from agents.pipeline.config import TurnConfig
from agents.pipeline.trace import TurnKind
from agents.providers.base import PCM, VADStream, monotonic_ms
from agents.providers.errors import ProviderError

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
    pause_id: int | None = None
    """The pause the turn ended in (None: it ended without one, e.g. truncated): work started
    at that :class:`Paused` saw all of the turn's speech."""


@dataclass(frozen=True, slots=True)
class Paused:
    """The speaker paused inside an utterance. ``pcm`` is the utterance so far; ``pause_id``
    tells this pause from the speaker's others. ``speculate``: the silence reached
    ``speculate_ms`` (start the final transcript; true in exactly one event of a pause);
    ``decide``: ask the end-of-turn model about a look (the silence reached the look less
    ``look_ahead_ms``), ``look`` telling which (0: ``pause_ms``, then each ``recheck_ms``) and
    ``hears_ms`` its silence. ``silence_ms`` is the silence heard so far (the end of ``pcm``)."""

    speaker: str
    transcript_id: str
    pause_id: int
    pcm: PCM
    end_of_speech_ms: float
    speculate: bool = True
    decide: bool = True
    look: int = 0
    silence_ms: float = 0.0
    hears_ms: float = 0.0

    def heard_at_look(self) -> PCM:
        """The utterance as the model should hear it at the look: its silence extended to
        ``hears_ms`` (:func:`extend_silence`)."""
        return extend_silence(self.pcm, self.silence_ms, self.hears_ms)


def extend_silence(pcm: PCM, silence_ms: float, to_ms: float) -> PCM:
    """16 kHz ``pcm`` that ends in ``silence_ms`` of silence, with that silence repeated until
    it lasts ``to_ms``: what the speaker's room would most likely sound like after the same
    silence ``to_ms - silence_ms`` later (faint room tone, not digital zeros). Unchanged when
    ``to_ms <= silence_ms`` or there is no silence to repeat."""
    tail = pcm[max(0, pcm.size - int(16 * silence_ms)):]
    need = int(16 * to_ms) - int(16 * silence_ms)
    if need <= 0 or tail.size == 0:
        return pcm
    return np.concatenate([pcm, np.resize(tail, need)])


@dataclass(frozen=True, slots=True)
class Resumed:
    """Speech again after a :class:`Paused`: the utterance goes on."""

    speaker: str
    transcript_id: str
    pause_id: int


@dataclass(frozen=True, slots=True)
class SpeechDiscarded:
    """Speech too short to be a turn."""

    speaker: str
    transcript_id: str
    speech_ms: float


TurnEvent = SpeechStarted | TurnEnded | SpeechDiscarded | Paused | Resumed


@runtime_checkable
class BatchedVADStream(Protocol):
    """A VAD stream that can queue windows for a batched run on the event loop (see
    :class:`agents.providers.silero_vad.SileroVADStream`)."""

    def submit(self, pcm: PCM) -> int:
        """Queue samples; return how many windows they completed (scored later)."""
        ...

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Called after queued windows were scored (or failed)."""
        ...

    def take(self) -> list[float]:
        """Scored probabilities, oldest first; raises ``ProviderError`` for a failed run."""
        ...


EventsCallback = Callable[["TurnDetector", list[TurnEvent]], None]
ErrorCallback = Callable[["TurnDetector", ProviderError], None]


class TurnDetector:
    """Turns for one speaker. Not thread-safe; lives on the event loop.

    With ``on_events`` (and ``on_error``) the detector is fed with :meth:`feed` and ``vad``
    must be a :class:`BatchedVADStream`; without, with :meth:`push`."""

    def __init__(
        self, *, speaker: str, vad: VADStream, config: TurnConfig,
        on_events: EventsCallback | None = None, on_error: ErrorCallback | None = None,
    ) -> None:
        if on_events is not None:
            if not isinstance(vad, BatchedVADStream):
                raise TypeError(f"{type(vad).__name__} cannot score windows in batches")
            if on_error is None:
                raise TypeError("on_events needs on_error too")
            vad.set_listener(self._scored)
        self.speaker = speaker
        self._vad = vad
        self._on_events = on_events
        self._on_error = on_error
        self._waiting: deque[tuple[PCM, int] | float] = deque()
        """Fed frames not handled yet, with the windows each completed; a float is a gap (ms of
        dropped audio, :meth:`gap`) that comes after the frames before it."""
        self._probs: list[float] = []
        """Scored probabilities not handed to a frame yet."""
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
        self._speculated = False  # the current pause's transcript stage reported
        self._looks = 0  # the current pause's end-of-turn stages reported
        self._end_at: float | None = None  # the silence (ms) at which the pause ends the turn
        self._pause_id = 0
        self._prob_sum = 0.0
        self.words_decide = False
        """Set while the agent is paused for this speaker: the utterance is a turn from
        ``paused_min_speech_ms`` of speech (its words decide); cleared when it ends."""
        smart = config.detector == "smart-turn"
        self._end_silence_ms = config.max_silence_ms if smart else config.silence_ms

        def before_the_end(ms: int | None) -> int | None:  # a stage the end of turn would pass
            return ms if ms is not None and ms < self._end_silence_ms else None

        self._looks_ms = config.looks_ms if smart else ()
        self._asks_ms = config.asks_ms if smart else ()
        self._speculate_ms = before_the_end(
            config.first_speculate_ms if config.speculative else None
        )

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
    def silence_ms(self) -> float:
        """Silence since the utterance's last speech window (0 outside one)."""
        return self._silence_ms if self._in_speech else 0.0

    @property
    def speech_confidence(self) -> float:
        """Mean speech probability of the current utterance's speech windows (0 outside)."""
        windows = self._speech_ms / self._window_ms if self._in_speech else 0.0
        return self._prob_sum / windows if windows else 0.0

    @property
    def paused(self) -> bool:
        """In an utterance, silent long enough that a :class:`Paused` went out."""
        return self._in_speech and self._paused

    @property
    def _paused(self) -> bool:
        """A stage of the current pause was reported."""
        return self._speculated or self._looks > 0

    @property
    def transcript_id(self) -> str:
        return self._transcript_id

    def utterance(self) -> PCM:
        """The current utterance's audio so far (for interim transcripts)."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)

    @property
    def deferred(self) -> bool:
        """True if fed with :meth:`feed` (events through the callbacks)."""
        return self._on_events is not None

    def push(self, pcm: PCM) -> list[TurnEvent]:
        """Feed 16 kHz mono samples; return what happened, oldest first."""
        if pcm.size == 0:
            return []
        return self._advance(pcm, self._vad.push(pcm))

    def feed(self, pcm: PCM) -> None:
        """Feed 16 kHz mono samples; their events (maybe none) go to ``on_events`` once the
        windows they complete are scored: at once if they complete none and nothing is
        pending, else after the VAD's batched run. Bad input raises ``ValueError`` here."""
        on_events = self._on_events
        if on_events is None:
            raise RuntimeError("feed() needs a detector built with on_events")
        if pcm.size == 0:
            return
        vad: BatchedVADStream = self._vad  # type: ignore[assignment]  # checked in __init__
        n = vad.submit(pcm)
        if n == 0 and not self._waiting:
            on_events(self, self._advance(pcm, ()))
        else:
            self._waiting.append((pcm, n))

    def _scored(self) -> None:
        vad: BatchedVADStream = self._vad  # type: ignore[assignment]
        assert self._on_events is not None and self._on_error is not None
        try:
            self._probs.extend(vad.take())
        except ProviderError as e:
            # Like a failed push: the frames waiting for this run are not heard.
            self._waiting.clear()
            self._probs = []
            self._on_error(self, e)
            return
        waiting, probs = self._waiting, self._probs
        used = 0
        while waiting:
            head = waiting[0]
            if isinstance(head, float):
                waiting.popleft()
                self._on_events(self, self._gap(head))
                continue
            pcm, n = head
            if n > len(probs) - used:
                break
            waiting.popleft()
            self._on_events(self, self._advance(pcm, probs[used : used + n]))
            used += n
        del probs[:used]

    def _advance(self, pcm: PCM, probs: Sequence[float]) -> list[TurnEvent]:
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
                    self._prob_sum = p
                    events.append(SpeechStarted(self.speaker, self._transcript_id))
                continue
            if p >= self._cfg.vad_threshold - _RELEASE_MARGIN:
                self._speech_ms += self._window_ms
                self._prob_sum += p
                self._silence_ms = 0.0
                self._last_speech_at = now
                if self._paused:
                    self._speculated, self._looks, self._end_at = False, 0, None
                    events.append(Resumed(self.speaker, self._transcript_id, self._pause_id))
            else:
                self._silence_ms += self._window_ms
                self._silent(now, events)
        if self._in_speech and self._samples >= 16000 * self._cfg.max_turn_seconds:
            events.append(self._finish(now, truncated=True))
        return events

    def _silent(self, now: float, events: list[TurnEvent]) -> None:
        """The utterance has been silent for ``_silence_ms``: a pause, or the end of the turn."""
        if self._silence_ms >= self._end_silence_ms or (
                self._end_at is not None and self._silence_ms >= self._end_at):
            events.append(self._finish(now, truncated=False))
            return
        speculate = (not self._speculated and self._speculate_ms is not None
                     and self._silence_ms >= self._speculate_ms)
        looks = self._looks
        while looks < len(self._asks_ms) and self._silence_ms >= self._asks_ms[looks]:
            looks += 1  # a gap of dropped audio may pass two
        decide = looks > self._looks
        if not (speculate or decide):
            return
        if not self._paused:
            self._pause_id += 1
        self._speculated |= speculate
        self._looks = looks
        events.append(Paused(
            speaker=self.speaker, transcript_id=self._transcript_id,
            pause_id=self._pause_id, pcm=self.utterance(),
            end_of_speech_ms=self._last_speech_at, speculate=speculate, decide=decide,
            look=max(0, looks - 1), silence_ms=self._silence_ms,
            hears_ms=float(self._looks_ms[looks - 1]) if decide else 0.0,
        ))

    def gap(self, ms: float) -> list[TurnEvent]:
        """``ms`` of this speaker's audio, after what was fed so far, were dropped (the process
        fell behind and caught up). In an utterance whose trailing silence had begun, the gap
        counts as silence: the turn decision is not late by the audio it never heard. A gap in
        speech, or outside an utterance, changes nothing. Returns the events now, or (fed with
        :meth:`feed`, frames still being scored) hands them to ``on_events`` after theirs."""
        if ms <= 0:
            return []
        if self._on_events is not None and self._waiting:
            self._waiting.append(float(ms))
            return []
        return self._gap(float(ms))

    def _gap(self, ms: float) -> list[TurnEvent]:
        if not self._in_speech or self._silence_ms <= 0:
            return []
        self._silence_ms += ms
        events: list[TurnEvent] = []
        self._silent(monotonic_ms(), events)
        return events

    def end_now(self, pause_id: int, *, at_silence_ms: float = 0.0) -> TurnEvent | None:
        """End the utterance at pause ``pause_id`` (an end-of-turn model judged it complete)
        once its silence reaches ``at_silence_ms`` (the look the model judged): the event, when
        it has; else the turn ends with the frame that brings the silence there (its event
        comes from :meth:`push` or ``on_events``) unless speech resumes first. None when that
        pause is over (speech resumed, or the turn already ended: :meth:`in_pause` is then
        false), or its end is still to come."""
        if not self.in_pause(pause_id):
            return None
        if self._silence_ms >= at_silence_ms:
            return self._finish(monotonic_ms(), truncated=False)
        self._end_at = min(at_silence_ms, self._end_at or at_silence_ms)
        return None

    def in_pause(self, pause_id: int) -> bool:
        """Pause ``pause_id`` is the current one: the speaker has not gone on, nor the turn
        ended."""
        return self._in_speech and self._paused and self._pause_id == pause_id

    def flush(self) -> TurnEvent | None:
        """End the current utterance now (the speaker left or stopped publishing)."""
        if not self._in_speech:
            return None
        return self._finish(monotonic_ms(), truncated=True)

    def reset(self) -> None:
        self._waiting.clear()
        self._probs = []
        self._in_speech = False
        self._speculated, self._looks, self._end_at = False, 0, None
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
        self._speculated, self._looks, self._end_at = False, 0, None
        self._transcript_id = new_id("TR")
        self._chunks = list(self._prefix)
        self._samples = self._prefix_samples
        self._prefix.clear()
        self._prefix_samples = 0

    def _finish(self, now: float, *, truncated: bool) -> TurnEvent:
        speech_ms = self._speech_ms
        pcm = self.utterance()
        tid = self._transcript_id
        pause_id = self._pause_id if self._paused else None
        self._in_speech = False
        self._speculated, self._looks, self._end_at = False, 0, None
        self._chunks = []
        self._samples = 0
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        least = self._cfg.paused_turn_ms if self.words_decide else self._cfg.min_speech_ms
        self.words_decide = False
        if speech_ms < least:
            return SpeechDiscarded(self.speaker, tid, speech_ms)
        return TurnEnded(
            speaker=self.speaker, transcript_id=tid, pcm=pcm, speech_ms=speech_ms,
            end_of_speech_ms=self._last_speech_at, decided_ms=now, truncated=truncated,
            pause_id=pause_id,
        )


# -- what the voice pipeline's turn task runs, besides a finished voice turn (TurnEnded) --------


@dataclass(frozen=True, slots=True)
class TextTurn:
    """A ``user_text`` message."""

    speaker: str
    text: str
    at_ms: float


@dataclass(frozen=True, slots=True)
class LineTurn:
    """A line the agent speaks on its own (a vision remark, the recovery line)."""

    text: str
    kind: TurnKind
    remember: bool = True


@dataclass(frozen=True, slots=True)
class ContinueTurn:
    """After failover: the model answers what the lost leg had not (its history ends with the
    caller's words or a tool round's results)."""


AgentTurn = TurnEnded | TextTurn | LineTurn | ContinueTurn
LINE_KINDS: dict[str, TurnKind] = {"voice": "voice", "text": "text", "vision": "vision"}
