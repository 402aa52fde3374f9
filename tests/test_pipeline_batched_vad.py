"""The voice pipeline with a VAD that scores windows in batches once per loop iteration (what the
Silero provider does): same turns as frame-by-frame scoring, a speaker leaving with frames still
being scored is harmless, and a failed batch drops those frames and nothing else."""

from __future__ import annotations

import asyncio

from fakes import FakeSTT, FakeVAD, FakeVADStream, silence, speech
from pipeline_kit import TURN, USER, Kit, job_spec, make_kit, running

from agents.config import PersonaConfig
from agents.pipeline.config import PipelineConfig
from agents.pipeline.voice import VoicePipeline
from agents.providers.base import PCM, VADStream
from agents.providers.errors import ProviderError


class LoopBatchedStream(FakeVADStream):
    """Scores like FakeVADStream, but hands the probabilities out in the next loop iteration."""

    def __init__(self, window: int, owner: BatchedFakeVAD) -> None:
        super().__init__(window)
        self._owner = owner
        self._queued: list[float] = []
        self._ready: list[float] = []
        self._error: ProviderError | None = None
        self._listener: object = None
        self._scheduled = False

    def submit(self, pcm: PCM) -> int:
        probs = self.push(pcm)
        self._queued += probs
        if probs and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)
        return len(probs)

    def set_listener(self, listener: object) -> None:
        self._listener = listener

    def take(self) -> list[float]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        ready, self._ready = self._ready, []
        return ready

    def _run(self) -> None:
        self._scheduled = False
        self._owner.runs += 1
        if self._owner.fail_next:
            self._owner.fail_next = False
            self._queued = []
            self._error = ProviderError("batched run failed", provider="fake")
        else:
            self._ready += self._queued
            self._queued = []
        assert callable(self._listener)
        self._listener()


class BatchedFakeVAD(FakeVAD):
    def __init__(self) -> None:
        super().__init__(name="batched-fake-vad")
        self.runs = 0
        self.fail_next = False

    def stream(self) -> VADStream:
        s = LoopBatchedStream(self._window, self)
        self.streams.append(s)
        return s


def batched_kit(vad: BatchedFakeVAD) -> Kit:
    """A transcription-only kit whose pipeline uses ``vad``."""
    kit = make_kit(stt=FakeSTT(script=lambda pcm: f"heard {pcm.size // 160} frames"),
                   steps=["stt", "return"])
    kit.vad = vad
    kit.pipeline = VoicePipeline(
        config=PipelineConfig.model_validate({"audio": {"pipeline": ["stt", "return"]},
                                              "turn": TURN}),
        spec=job_spec(), audio=kit.audio, messages=kit.msgs,
        persona=PersonaConfig(instructions="Be brief."), vad=vad, stt=kit.stt, llm=None,
        tts=None, tools=kit.tools,
    )
    return kit


async def test_turns_are_the_same_with_batched_scoring() -> None:
    results = []
    for vad in (FakeVAD(), BatchedFakeVAD()):
        kit = make_kit(stt=FakeSTT(script=lambda pcm: f"heard {pcm.size // 160} frames"),
                       steps=["stt", "return"]) if not isinstance(vad, BatchedFakeVAD) \
            else batched_kit(vad)
        async with running(kit):
            await kit.feed_live(silence(300) + speech(400) + silence(100) + speech(200)
                                + silence(300))
            await kit.msgs.wait_for(lambda m: m.type == "transcript_chunk")
        results.append([(c.text, c.is_final) for c in kit.msgs.transcripts(USER)])
        if isinstance(vad, BatchedFakeVAD):
            assert vad.runs > 0  # the batched path was used
    assert results[0] == results[1] and results[0]


async def test_speaker_leaving_while_frames_are_scored_is_harmless() -> None:
    vad = BatchedFakeVAD()
    kit = batched_kit(vad)
    async with running(kit):
        kit.feed(speech(400))  # no loop iteration: the last frames wait for the batched run
        kit.pipeline.speaker_left(USER)
        await asyncio.sleep(0.05)
        assert kit.msgs.transcripts(USER) == []
        await kit.feed_live(speech(300) + silence(300))  # the speaker comes back
        await kit.msgs.wait_for(lambda m: m.type == "transcript_chunk")
    assert [c.text for c in kit.msgs.transcripts(USER)] == ["heard 50 frames"]


async def test_a_failed_batched_run_drops_its_frames_and_listening_goes_on() -> None:
    vad = BatchedFakeVAD()
    kit = batched_kit(vad)
    async with running(kit):
        vad.fail_next = True
        await kit.feed_live(speech(10))  # this frame's window fails
        await kit.feed_live(speech(300) + silence(300))
        await kit.msgs.wait_for(lambda m: m.type == "transcript_chunk")
    # 30 speech frames (the failed one is not heard) + 20 silence frames closing the turn
    assert [c.text for c in kit.msgs.transcripts(USER)] == ["heard 50 frames"]
