"""Pauses inside an utterance: the detector's Paused/Resumed events, the smart-turn end of turn,
and the speculative final transcript (kept when the turn ends in the pause, dropped when the
speaker goes on). Fakes only: the real model is in test_smart_turn.py."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from fakes import FakeEndOfTurn, FakeLLM, FakeSTT, FakeVAD, silence, speech
from pipeline_kit import USER, make_kit, pipeline_tasks, running, wait_until

from agents.pipeline.config import TurnConfig
from agents.pipeline.turns import (
    Paused,
    Resumed,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    extend_silence,
)
from agents.providers.errors import ProviderError


def _pcm(frames: list) -> list[np.ndarray]:  # type: ignore[type-arg]
    return [np.frombuffer(f.data, dtype=np.int16) for f in frames]


def _run(det: TurnDetector, frames: list) -> list:  # type: ignore[type-arg]
    events = []
    for pcm in _pcm(frames):
        events.extend(det.push(pcm))
    return events


def _detector(**turn: object) -> TurnDetector:
    cfg = TurnConfig.model_validate({"silence_ms": 500, "pause_ms": 200, "min_speech_ms": 100,
                                     "prefix_ms": 0, **turn})
    return TurnDetector(speaker=USER, vad=FakeVAD().stream(), config=cfg)


def test_a_pause_is_reported_once_and_speech_after_it_resumes_the_utterance() -> None:
    det = _detector()
    events = _run(det, speech(300) + silence(250) + speech(200) + silence(250))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, Paused, Resumed, Paused]
    first, second = events[1], events[3]
    assert first.pause_id != second.pause_id and first.transcript_id == second.transcript_id
    # 300 ms of speech (less the onset frame: no prefix kept) and the 200 ms of the pause
    assert 16 * 480 <= first.pcm.size <= 16 * 500
    assert det.in_speech and det.paused


def test_silence_detector_ends_the_turn_in_the_pause_it_started() -> None:
    det = _detector()
    events = _run(det, speech(300) + silence(500))
    pause, end = events[1], events[2]
    assert isinstance(pause, Paused) and isinstance(end, TurnEnded)
    assert end.pause_id == pause.pause_id and not end.truncated


def test_smart_turn_detector_waits_for_max_silence_unless_ended_now() -> None:
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    events = _run(det, speech(300) + silence(600))
    # 600 ms: not over yet; the model was asked at 200 and 400 ms (twice pause_ms)
    assert [type(e) for e in events] == [SpeechStarted, Paused, Paused]
    pause = events[2]
    assert det.end_now(pause.pause_id + 1) is None  # another pause: refused
    end = det.end_now(pause.pause_id)
    assert isinstance(end, TurnEnded) and end.pause_id == pause.pause_id
    assert not det.in_speech and det.end_now(pause.pause_id) is None
    det2 = _detector(detector="smart-turn", max_silence_ms=1000)
    events = _run(det2, speech(300) + silence(1000))
    assert isinstance(events[-1], TurnEnded)


def test_dropped_audio_in_trailing_silence_counts_as_silence_and_nowhere_else() -> None:
    # The process fell behind and dropped 450 ms: the turn is not decided 450 ms late.
    det = _detector()
    assert det.gap(450) == []  # outside an utterance: nothing
    _run(det, speech(300) + silence(100))
    events = det.gap(450)
    assert [type(e) for e in events] == [TurnEnded] and not events[0].truncated
    # In speech (no silence yet), a gap may have held more words: the window starts afresh.
    det = _detector()
    _run(det, speech(300))
    assert det.gap(450) == [] and det.in_speech
    events = _run(det, silence(400))
    assert [type(e) for e in events] == [Paused] and det.in_speech
    # A gap that completes only the pause reports the pause.
    det = _detector()
    _run(det, speech(300) + silence(50))
    assert [type(e) for e in det.gap(200)] == [Paused]


def test_end_now_is_refused_once_the_speaker_went_on() -> None:
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    events = _run(det, speech(300) + silence(250))
    pause = events[-1]
    _run(det, speech(50))
    assert det.end_now(pause.pause_id) is None and det.in_speech


def test_no_pauses_without_smart_turn_or_speculation() -> None:
    det = _detector(speculative=False)
    events = _run(det, speech(300) + silence(500))
    assert [type(e) for e in events] == [SpeechStarted, TurnEnded]
    assert events[-1].pause_id is None


def test_an_incomplete_pause_is_looked_at_again_on_the_longer_silence() -> None:
    det = _detector(detector="smart-turn", max_silence_ms=1000, recheck_ms=[400, 700])
    events = _run(det, speech(300) + silence(800))
    assert [type(e) for e in events] == [SpeechStarted, Paused, Paused, Paused]
    looks = events[1:]
    assert [(e.look, e.decide, e.speculate) for e in looks] == [
        (0, True, True), (1, True, False), (2, True, False)]
    assert len({e.pause_id for e in looks}) == 1  # one pause, three looks
    # each look is asked look_ahead_ms (128) before it, and hears its silence: 200, 400, 700
    assert [e.hears_ms for e in looks] == [200, 400, 700]
    assert [e.silence_ms for e in looks] == [80, 280, 580]  # the fake VAD's 10 ms windows
    heard = [e.heard_at_look().size for e in looks]
    assert [round((n - heard[0]) / 16) for n in heard] == [0, 200, 500]
    assert isinstance(det.end_now(looks[0].pause_id), TurnEnded)  # any look may end it
    # speech again: the looks start over in the next pause
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    events = _run(det, speech(300) + silence(450) + speech(100) + silence(250))
    assert [(type(e), getattr(e, "look", None)) for e in events] == [
        (SpeechStarted, None), (Paused, 0), (Paused, 1), (Resumed, None), (Paused, 0)]
    # a gap that passes two looks reports the later one; [] asks only at pause_ms
    det = _detector(detector="smart-turn", max_silence_ms=1000, recheck_ms=[300, 400])
    _run(det, speech(300) + silence(100))
    assert [(e.look, e.decide) for e in det.gap(350)] == [(2, True)]
    det = _detector(detector="smart-turn", max_silence_ms=1000, recheck_ms=[])
    assert [type(e) for e in _run(det, speech(300) + silence(900))] == [SpeechStarted, Paused]
    # the default: twice pause_ms, only while shorter than max_silence_ms
    assert TurnConfig(detector="smart-turn", pause_ms=250).looks_ms == (250, 500)
    assert TurnConfig(detector="smart-turn", pause_ms=250, max_silence_ms=500).looks_ms == (250,)


def test_rechecks_must_rise_above_the_pause_and_stay_below_max_silence() -> None:
    for recheck, word in (([200], "rise"), ([500, 400], "rise"), ([2000], "max_silence_ms")):
        try:
            TurnConfig(detector="smart-turn", pause_ms=200, max_silence_ms=2000,
                       recheck_ms=recheck)
        except ValueError as e:
            assert word in str(e), (recheck, str(e))
        else:
            raise AssertionError(f"accepted recheck_ms {recheck}")


def test_the_transcript_stage_of_a_pause_can_come_before_the_models() -> None:
    det = _detector(detector="smart-turn", max_silence_ms=1000, speculate_ms=96,
                    look_ahead_ms=0)
    events = _run(det, speech(300) + silence(250))
    assert [type(e) for e in events] == [SpeechStarted, Paused, Paused]
    early, late = events[1], events[2]
    assert (early.speculate, early.decide) == (True, False)
    assert (late.speculate, late.decide) == (False, True)
    assert early.pause_id == late.pause_id and early.pcm.size < late.pcm.size
    assert late.pcm.size - early.pcm.size >= 16 * 96  # the 96 ms window more of silence
    events = _run(det, speech(100) + silence(120))  # went on, paused again: a new pause
    assert [type(e) for e in events] == [Resumed, Paused]
    assert events[1].speculate and not events[1].decide and events[1].pause_id > late.pause_id
    assert det.end_now(late.pause_id) is None
    # The silence detector has no model stage: one event, at speculate_ms.
    det = _detector(speculate_ms=96)
    events = _run(det, speech(300) + silence(150))
    assert [type(e) for e in events] == [SpeechStarted, Paused] and events[1].speculate
    # By default the transcript starts with the model's first ask (look_ahead_ms, 128, before
    # pause_ms): one event carries both stages.
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    events = _run(det, speech(300) + silence(250))
    assert [(e.speculate, e.decide, e.silence_ms) for e in events[1:]] == [(True, True, 80)]
    # With speculate_ms at pause_ms, the model's stage comes first.
    det = _detector(detector="smart-turn", max_silence_ms=1000, speculate_ms=200)
    events = _run(det, speech(300) + silence(250))
    assert [(e.speculate, e.decide, e.silence_ms) for e in events[1:]] == [
        (False, True, 80), (True, False, 200)]


def test_a_look_asked_ahead_ends_the_turn_only_when_its_silence_comes() -> None:
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    events = _run(det, speech(300) + silence(100))
    ask = events[-1]
    assert isinstance(ask, Paused) and ask.decide and (ask.silence_ms, ask.hears_ms) == (80, 200)
    # the model judged it complete: the turn ends when the silence reaches the look, not now
    assert det.end_now(ask.pause_id, at_silence_ms=ask.hears_ms) is None
    assert det.in_pause(ask.pause_id) and det.in_speech
    assert _run(det, silence(90)) == []  # 190 ms
    events = _run(det, silence(20))
    assert [type(e) for e in events] == [TurnEnded] and events[0].pause_id == ask.pause_id
    assert not det.in_pause(ask.pause_id)
    # the speaker went on before the look: no end, and none carried into the next pause
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    ask = _run(det, speech(300) + silence(100))[-1]
    assert det.end_now(ask.pause_id, at_silence_ms=200) is None
    events = _run(det, speech(100) + silence(300))
    assert [type(e) for e in events] == [Resumed, Paused, Paused] and det.in_speech
    assert not det.in_pause(ask.pause_id)
    # a gap of dropped audio counts as the silence it stood for
    det = _detector(detector="smart-turn", max_silence_ms=1000)
    ask = _run(det, speech(300) + silence(100))[-1]
    assert det.end_now(ask.pause_id, at_silence_ms=200) is None
    assert [type(e) for e in det.gap(150)] == [TurnEnded]


def test_extend_silence_repeats_the_silence_heard() -> None:
    rng = np.random.default_rng(1)
    tone = rng.normal(0, 3, 16 * 80).astype(np.int16)
    pcm = np.concatenate([np.full(16 * 300, 5000, np.int16), tone])
    out = extend_silence(pcm, 80, 200)
    assert out.size == pcm.size + 16 * 120 and np.array_equal(out[: pcm.size], pcm)
    extra = out[pcm.size:]
    assert np.array_equal(extra[: tone.size], tone) and np.array_equal(extra[tone.size:],
                                                                     tone[: extra.size - tone.size])
    assert extend_silence(pcm, 200, 200) is pcm and extend_silence(pcm, 0, 200) is pcm


def test_look_ahead_must_leave_some_silence_to_extend() -> None:
    with pytest.raises(ValueError, match="look_ahead_ms"):  # leaves 20 ms of pause_ms
        TurnConfig(detector="smart-turn", pause_ms=200, look_ahead_ms=180)
    # the default on a short pause: asked after 32 ms of silence, the transcript with it
    cfg = TurnConfig(detector="smart-turn", pause_ms=100)
    assert cfg.asks_ms == (32, 72) and cfg.first_speculate_ms == 32
    assert TurnConfig(detector="smart-turn", look_ahead_ms=0).asks_ms == (200, 400)
    assert TurnConfig(pause_ms=200).first_speculate_ms == 200  # the silence detector: no model


def test_speculate_ms_may_not_exceed_the_pause() -> None:
    try:
        TurnConfig(pause_ms=200, speculate_ms=300)
    except ValueError as e:
        assert "speculate_ms" in str(e)
    else:
        raise AssertionError("accepted speculate_ms > pause_ms")


def test_max_silence_must_exceed_the_pause() -> None:
    try:
        TurnConfig(detector="smart-turn", pause_ms=500, max_silence_ms=400)
    except ValueError as e:
        assert "max_silence_ms" in str(e)
    else:
        raise AssertionError("accepted max_silence_ms <= pause_ms")


# --- the pipeline ---------------------------------------------------------------------------

SLOW_TURN = {"silence_ms": 600, "pause_ms": 200}


async def test_speculative_transcript_started_at_the_pause_is_the_final_one() -> None:
    stt = FakeSTT(delay=0.15)
    kit = make_kit(stt=stt, llm=FakeLLM(default="Fine."), turn=SLOW_TURN)
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: len(stt.calls) == 1)  # started in the pause, turn not over
        assert kit.msgs.transcripts(USER) == []
        await kit.feed_live(silence(400))
        await kit.agent_final()
    assert len(stt.calls) == 1, "the final transcript was computed twice"
    assert [u.text for u in kit.msgs.transcripts(USER)] == ["hello there"]
    assert kit.pipeline.record()["speculation"] == {"started": 1, "kept": 1, "dropped": 0}


async def test_speculative_transcript_is_dropped_when_the_speaker_goes_on() -> None:
    stt = FakeSTT(script=lambda pcm: "I want" if pcm.size < 16 * 700 else "I want a table",
                  delay=0.05)
    kit = make_kit(stt=stt, llm=FakeLLM(default="Fine."), turn=SLOW_TURN)
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: len(stt.calls) == 1)
        await kit.feed_live(speech(300) + silence(650))
        await kit.agent_final()
    users = kit.msgs.transcripts(USER)
    assert [u.text for u in users] == ["I want a table"]  # never the first pause's guess
    assert kit.llm.requests[0].messages[-1].content == "I want a table"
    counts = kit.pipeline.record()["speculation"]
    assert counts["kept"] == 1 and counts["dropped"] == 1
    assert not [t for t in pipeline_tasks() if "speculative" in t.get_name()]


async def test_smart_turn_ends_a_complete_turn_at_the_first_pause() -> None:
    eot = FakeEndOfTurn(probabilities=[0.9])
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot,
                   turn={"detector": "smart-turn", "pause_ms": 200, "max_silence_ms": 3000})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(300))
        await kit.agent_final()
    assert len(eot.calls) == 1 and eot.calls[0] >= 16 * 500
    stages = kit.pipeline.record()["turns"][-1]["stages"]
    assert stages["turn_decided"] < 1000  # far below max_silence_ms
    assert kit.pipeline.record()["end_of_turn"] == {"look_0": 1}


async def test_smart_turn_waits_on_an_incomplete_turn_and_takes_the_rest() -> None:
    eot = FakeEndOfTurn(probabilities=[0.1, 0.2, 0.95])
    stt = FakeSTT(script=lambda pcm: f"{pcm.size // 1600} tenths")
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot, stt=stt,
                   turn={"detector": "smart-turn", "pause_ms": 200, "max_silence_ms": 3000})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(500))  # "my number is, um..."
        await asyncio.sleep(0.05)
        # asked at 200 and at 400 ms: incomplete both times
        assert kit.msgs.transcripts(USER) == [] and len(eot.calls) == 2
        await kit.feed_live(speech(300) + silence(300))
        await kit.agent_final()
    assert len(eot.calls) == 3
    final = [u for u in kit.msgs.transcripts(USER) if u.is_final]
    # the whole utterance: the first pause's transcript (kept when the speaker went on; it
    # started with the model's first ask, after 80 ms of silence) and the audio after it,
    # recognised alone (incremental recognition)
    assert len(final) == 1 and final[0].text == "3 tenths 8 tenths"
    assert len(stt.calls) == 2 and stt.calls[1] < eot.calls[2] - 16 * 400


async def test_a_turn_judged_incomplete_at_the_pause_ends_at_the_second_look() -> None:
    eot = FakeEndOfTurn(probabilities=[0.1, 0.9])
    stt = FakeSTT(delay=0.05)
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot, stt=stt,
                   turn={"detector": "smart-turn", "pause_ms": 200, "max_silence_ms": 3000})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(500))
        await kit.agent_final()
    # Only 500 ms of silence came (max_silence_ms is 3000): the second look ended the turn,
    # on 200 ms more of the silence than the first.
    assert len(eot.calls) == 2 and eot.calls[1] - eot.calls[0] >= 16 * 200
    # the transcript started at the first look is the final one
    assert len(stt.calls) == 1 and kit.pipeline.record()["speculation"]["kept"] == 1
    assert kit.pipeline.record()["end_of_turn"] == {"look_1": 1}


AHEAD_TURN = {"detector": "smart-turn", "pause_ms": 200, "max_silence_ms": 3000}


async def _judged_before_the_look(kit: Any, eot: FakeEndOfTurn) -> None:
    """Speech, then 150 ms of silence: the model was asked (at 80 ms) and has answered, and
    the look's 200 ms of silence has not come."""
    await kit.feed_live(speech(300) + silence(150))
    await wait_until(lambda: len(eot.calls) == 1)
    await asyncio.sleep(0.05)


async def test_the_model_asked_ahead_ends_the_turn_when_the_look_s_silence_comes() -> None:
    eot = FakeEndOfTurn(probabilities=[0.9])
    stt = FakeSTT(delay=0.01)
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot, stt=stt, turn=AHEAD_TURN)
    async with running(kit):
        await _judged_before_the_look(kit, eot)
        # judged complete, on the silence extended to 200 ms; 150 ms came: not ended yet
        assert eot.calls[0] == 16 * (300 + 200)
        assert [u for u in kit.msgs.transcripts(USER) if u.is_final] == []
        assert "thinking" not in kit.msgs.statuses()
        await kit.feed_live(silence(60))
        await kit.agent_final()
    assert [u.text for u in kit.msgs.transcripts(USER) if u.is_final] == ["hello there"]
    assert kit.pipeline.record()["end_of_turn"] == {"look_0": 1}
    assert kit.pipeline.record()["speculation"] == {"started": 1, "kept": 1, "dropped": 0}


async def test_a_turn_judged_complete_ahead_goes_on_if_the_speaker_does() -> None:
    eot = FakeEndOfTurn(probabilities=[0.9, 0.9])
    # the first pause's transcript is kept; the audio after it is recognised alone
    stt = FakeSTT(script=lambda pcm: "I want" if pcm.size < 16 * 450 else "a table")
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot, stt=stt, turn=AHEAD_TURN)
    async with running(kit):
        await _judged_before_the_look(kit, eot)
        await kit.feed_live(speech(300) + silence(300))  # went on before the look's 200 ms
        await kit.agent_final()
    assert [u.text for u in kit.msgs.transcripts(USER) if u.is_final] == ["I want a table"]
    # the answer to the first pause's words was speculative, and dropped
    assert kit.llm.requests[-1].messages[-1].content == "I want a table"
    # one turn, ended at the second pause's look; the first pause's verdict ended nothing
    assert kit.pipeline.record()["end_of_turn"] == {"look_0": 1} and len(eot.calls) == 2


async def test_an_early_transcript_is_kept_when_the_model_ends_the_turn_at_its_pause() -> None:
    eot = FakeEndOfTurn(probabilities=[0.9])
    stt = FakeSTT(delay=0.05)
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot, stt=stt,
                   turn={"detector": "smart-turn", "pause_ms": 200, "speculate_ms": 96,
                         "look_ahead_ms": 0, "max_silence_ms": 3000})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(150))
        await wait_until(lambda: len(stt.calls) == 1)  # the transcript at 96 ms: no model yet
        assert eot.calls == []
        await kit.feed_live(silence(150))
        await kit.agent_final()
    assert len(eot.calls) == 1 and stt.calls[0] < eot.calls[0]  # asked later, on more silence
    assert len(stt.calls) == 1, "the final transcript was computed twice"
    assert [u.text for u in kit.msgs.transcripts(USER) if u.is_final] == ["hello there"]
    assert kit.pipeline.record()["speculation"] == {"started": 1, "kept": 1, "dropped": 0}


async def test_a_sentence_the_model_misjudged_ends_at_sentence_end_ms_and_a_clause_waits() -> None:
    async def decided(words: str) -> tuple[float | None, int]:
        """When the turn ended after the end of speech (ms), with 250 ms of silence fed (the
        model asked about its first look only: the second's ask is at 272 ms) and then none
        for a second (fed faster than real time, the wall clock decides), or None if
        it did not end by then; and how often the model was asked."""
        eot = FakeEndOfTurn(default=0.1)  # "not done", at every look
        kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot,
                       stt=FakeSTT(script=lambda pcm: words),
                       turn={"detector": "smart-turn", "pause_ms": 200, "sentence_end_ms": 500,
                             "max_silence_ms": 1500})
        async with running(kit):
            await kit.feed_live(speech(300) + silence(250))
            await asyncio.sleep(1.0)
            ended = [u for u in kit.msgs.transcripts(USER) if u.is_final]
            await kit.feed_live(silence(1300))  # max_silence_ms ends it in any case
            await kit.agent_final()
        at = kit.pipeline.record()["turns"][-1]["stages"]["turn_decided"] if ended else None
        # the sentence rule ended it, or no one did (max_silence_ms, the detector's own)
        assert kit.pipeline.record()["end_of_turn"] == ({"sentence": 1} if ended else {})
        return at, len(eot.calls)

    for sentence in ("Yes, that is correct.", "Is it open?"):
        at, looks = await decided(sentence)
        assert at is not None and 450 <= at < 900 and looks == 1, (sentence, at, looks)
    # the model's judgement stands, at both looks (pause_ms, then twice that)
    assert await decided("My number is,") == (None, 2)


async def test_a_failing_end_of_turn_model_falls_back_to_the_silence_window() -> None:
    eot = FakeEndOfTurn(probabilities=[ProviderError("broken", provider="fake-eot")])
    kit = make_kit(llm=FakeLLM(default="Fine."), end_of_turn=eot,
                   turn={"detector": "smart-turn", "pause_ms": 200, "silence_ms": 400,
                         "max_silence_ms": 5000})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(200))
        await kit.agent_final()
    stages = kit.pipeline.record()["turns"][-1]["stages"]
    # Fed faster than real time, the pause comes right after the end of speech; the turn then
    # ends silence_ms after the end of speech, not at max_silence_ms.
    assert 380 <= stages["turn_decided"] < 2000
    assert kit.pipeline.record()["end_of_turn"] == {"fallback": 1}
