"""Incremental recognition: an interim transcript taken at a gap in the speech, or a pause's
transcript the speaker went on from, is a segment; the final transcript recognises only the audio
after it. Fakes only."""

from __future__ import annotations

import numpy as np
from fakes import FakeLLM, FakeSTT, silence, speech
from pipeline_kit import USER, make_kit, running, wait_until

from agents.pipeline.segments import Heard, Segments, join
from agents.providers.base import Transcript

TURN = {"silence_ms": 600, "pause_ms": 200, "interim_interval_ms": 500, "segment_gap_ms": 100}


def _tenths(pcm: np.ndarray) -> str:  # type: ignore[type-arg]
    return f"t{pcm.size // 1600}"


async def test_an_interim_at_a_gap_is_not_recognised_again_by_the_final() -> None:
    stt = FakeSTT(interim=True, script=_tenths)
    kit = make_kit(stt=stt, llm=FakeLLM(default="Fine."), turn=TURN)
    async with running(kit):
        await kit.feed_live(speech(600) + silence(120))  # a gap between phrases, not a pause
        await wait_until(lambda: len(stt.calls) == 1)
        await kit.feed_live(speech(400) + silence(650))
        await kit.agent_final()
    # each call recognised only the audio after the previous cut (at a gap), the final too
    finals = [u for u in kit.msgs.transcripts(USER) if u.is_final]
    assert [u.text for u in finals] == [" ".join(f"t{n // 1600}" for n in stt.calls)]
    assert stt.calls[0] == 16 * 700  # the first phrase and the gap that cut it
    assert sum(stt.calls) == 16 * (600 + 120 + 400 + 200)  # up to the pause: nothing twice


async def test_without_a_gap_the_interim_is_no_segment() -> None:
    stt = FakeSTT(interim=True, script=_tenths)
    kit = make_kit(stt=stt, llm=FakeLLM(default="Fine."), turn={**TURN, "segment_gap_ms": 0})
    async with running(kit):
        await kit.feed_live(speech(600) + silence(120))
        await kit.feed_live(speech(400) + silence(650))
        await kit.agent_final()
    interim, final = stt.calls[0], stt.calls[-1]
    assert final > interim + 16 * 400  # the whole utterance, from its start
    finals = [u for u in kit.msgs.transcripts(USER) if u.is_final]
    assert [u.text for u in finals] == [f"t{final // 1600}"]


async def test_segments_join_texts_and_weigh_confidence_by_audio() -> None:
    stt = FakeSTT(responses=["table for two"])
    seg = Segments(stt=stt, language=None)
    before = Heard("TR_1", 16000, Transcript(text="A  ", confidence=0.5, language="en"))
    seg.commit("u", before)
    pcm = np.zeros(48000, dtype=np.int16)
    result = await seg.transcribe("u", "TR_1", pcm)
    assert result.text == "A table for two" and stt.calls == [32000]
    assert abs(result.confidence - (0.5 * 1 + 0.9 * 2) / 3) < 0.01
    assert seg.prefix("u", "TR_2") is None  # another utterance starts from nothing
    assert join(before, Transcript(text="", confidence=0.0), 0).text == "A"


async def test_a_runaway_decode_or_a_shorter_transcript_is_no_segment() -> None:
    seg = Segments(stt=FakeSTT(), language=None)
    seg.commit("u", Heard("TR_1", 32000, Transcript(text="a b", confidence=0.9)))
    seg.commit("u", Heard("TR_1", 16000, Transcript(text="a", confidence=0.9)))
    seg.commit("u", Heard("TR_1", 48000, Transcript(text="x x x x", confidence=0.9,
                                                     degenerate=True)))
    heard = seg.prefix("u", "TR_1")
    assert heard is not None and heard.samples == 32000
    seg.forget("u")
    assert seg.prefix("u", "TR_1") is None
