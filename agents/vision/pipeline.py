"""The standalone vision pipeline ``["visionllm", "tts", "return"]``.

It watches the :class:`FrameStore`. When a track's newest image differs enough from the last
one described, no sooner than ``min_interval_s`` after the previous description, and while
nobody is speaking, it asks the vision model what changed, publishes a ``vision_description``
message, and (with ``tts``/``return``) has the voice pipeline say it. Each description leaves a
latency trace (frame captured → model's first token → spoken) in an ``agent_metrics`` message
of kind ``vision`` and in prometheus histograms.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import structlog

from agents.io import MessageOutput
from agents.messages import agent_metrics, new_id, vision_description
from agents.providers.base import LLM, ChatMessage, ChatRequest, TextDelta
from agents.providers.errors import ProviderError, ProviderUnavailable
from agents.vision.change import Thumb, difference
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore, Sample, TrackSource
from agents.vision.metrics import VisionMetrics, default_vision_metrics

log = structlog.get_logger("agents.vision")

Decision = Literal["unchanged", "rate_limited", "busy", "described", "empty", "failed"]
MAX_TRACES = 50


class SpeechOutput(Protocol):
    """What the vision pipeline needs from the voice pipeline."""

    def busy(self) -> bool:
        """The user is speaking or the agent is speaking or thinking."""
        ...

    async def say(self, text: str, *, kind: str = "vision") -> bool:
        """Speak ``text``; ``False`` when it was not (fully) spoken, e.g. interrupted."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class VisionTurn:
    """One description and its latency trace (ms after the frame was captured)."""

    turn_id: str
    speaker: str
    source: TrackSource
    description: str
    stages: dict[str, float]
    spoken: bool | None
    """``None`` when the pipeline does not speak, or speech was skipped as someone talked."""


class VisionPipeline:
    def __init__(
        self,
        *,
        frames: FrameStore,
        llm: LLM,
        messages: MessageOutput,
        config: VisionConfig,
        speech: SpeechOutput | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: VisionMetrics | None = None,
    ) -> None:
        if not llm.supports_vision:
            raise ValueError(f"vision pipeline needs a vision-capable model; {llm.name} is not")
        if config.speaks and speech is None:
            raise ValueError(f"vision pipeline {config.pipeline} speaks but has no speech output")
        self._frames = frames
        self._llm = llm
        self._messages = messages
        self._config = config
        self._speech = speech if config.speaks else None
        self._clock = clock
        self._metrics = metrics or default_vision_metrics()
        self._described: dict[tuple[str, TrackSource], Thumb] = {}
        self._last_text: dict[tuple[str, TrackSource], str] = {}
        self._seen: dict[tuple[str, TrackSource], int] = {}
        self._blocked: set[tuple[str, TrackSource]] = set()
        self._last_described_at = float("-inf")
        self._decisions: Counter[str] = Counter()
        self._turns: list[VisionTurn] = []

    @property
    def turns(self) -> list[VisionTurn]:
        return list(self._turns)

    async def run(self) -> str:
        """Describe changes until cancelled. Returns ``"vision_unavailable"`` only when the
        model can never run here (a missing package or model file); other model errors are
        logged and the next change is tried after ``min_interval_s``."""
        seq = 0
        while True:
            timeout = self._retry_delay()
            try:
                seq = await asyncio.wait_for(self._frames.wait_new(seq), timeout)
            except TimeoutError:
                pass
            try:
                await self.check_once()
            except ProviderUnavailable as e:
                log.error("vision_unavailable", provider=self._llm.name, error=str(e))
                return "vision_unavailable"

    def _retry_delay(self) -> float | None:
        if not self._blocked:
            return None
        wait_rate = self._last_described_at + self._config.min_interval_s - self._clock()
        return max(self._config.busy_retry_s, wait_rate, 0.01)

    async def check_once(self) -> Decision | None:
        """Look at the newest sample of every track once; describe at most one change.
        Returns what was decided for the most changed track, ``None`` when nothing was new."""
        best: tuple[float, Sample] | None = None
        for sample in self._frames.samples():
            key = (sample.speaker, sample.source)
            if self._seen.get(key) == sample.seq and key not in self._blocked:
                continue
            self._seen[key] = sample.seq
            self._blocked.discard(key)
            score = difference(sample.thumb, self._described.get(key))
            if score < self._config.change_threshold:
                self._decide("unchanged")
                continue
            if best is not None and score <= best[0]:
                self._blocked.add(key)  # changed too; its turn comes after this one
                continue
            if best is not None:
                self._blocked.add((best[1].speaker, best[1].source))
            best = (score, sample)
        if best is None:
            return None
        score, sample = best
        key = (sample.speaker, sample.source)
        if self._clock() - self._last_described_at < self._config.min_interval_s:
            self._blocked.add(key)
            return self._decide("rate_limited")
        if self._speech is not None and self._speech.busy():
            self._blocked.add(key)
            return self._decide("busy")
        decision = await self._describe(sample, score)
        if decision == "failed":
            self._blocked.add(key)  # retried after min_interval_s even if no new frame comes
        return self._decide(decision)

    def _decide(self, decision: Decision) -> Decision:
        self._decisions[decision] += 1
        self._metrics.decisions.labels(decision).inc()
        return decision

    async def _describe(self, sample: Sample, score: float) -> Decision:
        key = (sample.speaker, sample.source)
        turn_id = new_id("VT")
        t0 = sample.captured_at
        self._last_described_at = requested = self._clock()
        stages = {"encoded": sample.encoded_at - t0, "model_request": requested - t0}
        first_token: float | None = None
        parts: list[str] = []
        try:
            async for event in self._llm.chat(self._request(sample)):
                if isinstance(event, TextDelta) and event.text:
                    if first_token is None:
                        first_token = self._clock()
                        stages["first_token"] = first_token - t0
                    parts.append(event.text)
        except ProviderUnavailable:
            raise
        except ProviderError as e:
            log.warning(
                "vision_describe_failed", turn_id=turn_id, provider=self._llm.name,
                retryable=e.retryable, error=str(e),
            )
            return "failed"
        stages["model_done"] = self._clock() - t0
        text = " ".join("".join(parts).split())
        if not text:
            log.info("vision_describe_empty", turn_id=turn_id, provider=self._llm.name)
            return "empty"
        self._described[key] = sample.thumb
        self._last_text[key] = text
        await self._messages.publish(
            vision_description(
                description=text, participant_id=sample.speaker, track_source=sample.source
            )
        )
        stages["published"] = self._clock() - t0
        spoken: bool | None = None
        if self._speech is not None:
            if self._speech.busy():
                log.info("vision_speech_skipped", turn_id=turn_id, reason="busy")
            else:
                spoken = await self._speech.say(text, kind="vision")
                stages["spoken"] = self._clock() - t0
        await self._finish(
            VisionTurn(
                turn_id=turn_id, speaker=sample.speaker, source=sample.source,
                description=text, stages={k: v * 1000.0 for k, v in stages.items()},
                spoken=spoken,
            ),
            score,
        )
        return "described"

    def _request(self, sample: Sample) -> ChatRequest:
        previous = self._last_text.get((sample.speaker, sample.source))
        where = "screen share" if sample.source == "screen_share" else "camera"
        prompt = (
            f"The {where} image now. Before, you described it as: {previous}"
            if previous else f"The {where} image now; nothing was described before."
        )
        return ChatRequest(
            messages=[
                ChatMessage(role="system", content=self._config.describe_prompt),
                ChatMessage(role="user", content=prompt, images=(sample.image,)),
            ],
            max_tokens=self._config.max_tokens,
        )

    async def _finish(self, turn: VisionTurn, score: float) -> None:
        self._turns.append(turn)
        del self._turns[:-MAX_TRACES]
        for stage, ms in turn.stages.items():
            self._metrics.stage_seconds.labels(stage).observe(ms / 1000.0)
        log.info(
            "vision_described", turn_id=turn.turn_id, speaker=turn.speaker, source=turn.source,
            change=round(score, 3), spoken=turn.spoken,
            **{f"{k}_ms": round(v, 1) for k, v in turn.stages.items()},
        )
        await self._messages.publish(
            agent_metrics(
                turn_id=turn.turn_id, kind="vision", stages=turn.stages,
                interrupted=turn.spoken is False,
            )
        )

    def record(self) -> dict[str, Any]:
        """Decision counters, frame counters and the latest traces, for the job record."""
        return {
            "vision": {
                "decisions": dict(self._decisions),
                "frames": self._frames.record(),
                "turns": [asdict(t) for t in self._turns],
            }
        }
