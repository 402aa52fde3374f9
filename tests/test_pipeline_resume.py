"""Barge-in pauses the agent at once; words stop it, a noise lets it resume (false-interruption
resume): the rest of the answer is played from where the caller stopped hearing it."""

from __future__ import annotations

import asyncio
import math

import pytest
from fakes import FakeAudioOutput, FakeLLM, FakeSTT, FakeVAD, silence, speech
from pipeline_kit import USER, Kit, make_kit, running, wait_until

from agents.pipeline.config import TurnConfig
from agents.pipeline.turns import TurnDetector
from agents.providers.base import PCM, VADStream

S1 = "The first sentence is here."
S2 = "The second sentence is longer than that."
ANSWER = f"{S1} {S2}"
RESUME = {"barge_in_min_ms": 100, "min_speech_ms": 250, "false_interruption_timeout": 0.3}


def _kit(**kw: object) -> Kit:
    turn = {**RESUME, **kw.pop("turn", {})}  # type: ignore[dict-item]
    return make_kit(llm=FakeLLM(scripts=[[ANSWER], ["Okay."]]),
                    audio=FakeAudioOutput(auto_play=False), turn=turn, **kw)  # type: ignore[arg-type]


async def _speaking(kit: Kit) -> float:
    total = sum(kit.tts.duration(s) for s in (S1, S2))
    await wait_until(lambda: abs(kit.audio.captured_seconds - total) < 0.03)
    return total


async def test_a_short_noise_pauses_the_agent_which_then_resumes_where_it_was() -> None:
    stt = FakeSTT()
    kit = _kit(stt=stt, turn={"paused_min_speech_ms": 200})
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        total = await _speaking(kit)
        kit.audio.advance(kit.tts.duration(S1))
        for f in speech(150):  # over barge_in_min_ms, under paused_min_speech_ms: a noise
            kit.pipeline.push_audio(USER, f)
        assert kit.audio.cleared == 1 and kit.audio.queued_duration == 0.0  # paused at once
        kit.feed(silence(250))
        await asyncio.sleep(0.1)
        assert kit.audio.queued_duration == 0.0  # still paused: the timeout has not passed
        await wait_until(lambda: kit.audio.queued_duration > 0)  # resumed
        # what was taken back is queued again: the rest of the answer, from S2 on
        assert abs(kit.audio.queued_duration - kit.tts.duration(S2)) < 0.03
        assert abs(kit.audio.captured_seconds - total - kit.tts.duration(S2)) < 0.03
        kit.audio.release()
        final = await kit.agent_final()
    assert final.text == ANSWER and final.interrupted is None
    counters = kit.pipeline.record()["counters"]
    assert counters["barge_ins"] == 0 and counters["false_interruptions"] == 1
    assert kit.msgs.statuses()[-3:] == ["listening", "speaking", "listening"]
    assert stt.calls == []  # too short to be a turn even over the paused agent: not recognised


async def test_a_backchannel_over_the_paused_agent_lets_it_resume() -> None:
    stt = FakeSTT(responses=["Mm-hmm, okay."])
    kit = _kit(stt=stt)
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.audio.advance(kit.tts.duration(S1))
        kit.feed(speech(400) + silence(250))
        assert kit.audio.cleared == 1  # paused
        await wait_until(lambda: kit.audio.queued_duration > 0)  # and resumed
        assert abs(kit.audio.queued_duration - kit.tts.duration(S2)) < 0.03
        kit.audio.release()
        final = await kit.agent_final()
    assert final.text == ANSWER and final.interrupted is None
    # what the caller said is shown, but it is no turn: not answered, not in the history
    said = [t.text for t in kit.msgs.transcripts(USER) if t.is_final]
    assert said[-1] == "Mm-hmm, okay."
    assert len(kit.llm.requests) == 1
    counters = kit.pipeline.record()["counters"]
    assert counters["barge_ins"] == 0 and counters["false_interruptions"] == 1


async def test_without_backchannels_any_words_stop_the_paused_agent() -> None:
    stt = FakeSTT(responses=["Mm-hmm."])
    kit = _kit(stt=stt, turn={"backchannels": []})
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.audio.advance(kit.tts.duration(S1))
        kit.feed(speech(400) + silence(250))
        first = await kit.agent_final()
        kit.audio.release()
        await kit.agent_final(2)
    assert first.interrupted is True


async def test_a_wordless_turn_over_the_agent_resumes_it_too() -> None:
    stt = FakeSTT(responses=[""])  # a cough long enough to be a turn: no words
    kit = _kit(stt=stt)
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.audio.advance(0.2)
        kit.feed(speech(300) + silence(250))
        assert kit.audio.cleared == 1
        await wait_until(lambda: kit.audio.queued_duration > 0)
        kit.audio.release()
        final = await kit.agent_final()
    assert final.text == ANSWER and final.interrupted is None
    assert len(stt.calls) == 1
    assert kit.pipeline.record()["counters"]["false_interruptions"] == 1


# 150 ms: under min_speech_ms (250), so no turn over a speaking agent; over the paused agent a
# turn from paused_min_speech_ms (64) on: a quick "Wait." stops it too.
@pytest.mark.parametrize(("ms", "words"), [(400, "wait a moment"), (150, "Wait.")])
async def test_words_over_the_paused_agent_stop_it_at_what_was_heard(ms: int, words: str) -> None:
    stt = FakeSTT(responses=[words])
    kit = _kit(stt=stt)
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.audio.advance(kit.tts.duration(S1))
        kit.feed(speech(ms) + silence(250))
        first = await kit.agent_final()
        kit.audio.release()
        second = await kit.agent_final(2)
    assert first.text == S1 and first.interrupted is True
    assert second.text == "Okay."
    assert len(stt.calls) == 1  # the words were recognised once, for the check and the turn
    history = [(m.role, m.content) for m in kit.llm.requests[1].messages[1:]]
    assert history == [("user", "tell me"), ("assistant", S1), ("user", words)]
    counters = kit.pipeline.record()["counters"]
    assert counters["barge_ins"] == 1 and counters["false_interruptions"] == 0


async def test_with_a_full_room_queue_the_cut_is_still_at_what_was_heard() -> None:
    # A real room's queue holds 0.5 s: the rest of the answer waits to be handed over.
    stt = FakeSTT(responses=["wait a moment"])
    kit = make_kit(llm=FakeLLM(scripts=[[ANSWER], ["Okay."]]), stt=stt, turn=RESUME,
                   audio=FakeAudioOutput(auto_play=False, max_queue=0.3))
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await wait_until(lambda: kit.audio.queued_duration > 0.25)
        kit.audio.advance(0.2)  # "The first" heard of S1 (0.54 s)
        await wait_until(lambda: kit.audio.queued_duration > 0.25)
        kit.feed(speech(400) + silence(250))
        first = await kit.agent_final()
        kit.audio.release()
        await kit.agent_final(2)
    assert first.interrupted is True
    assert first.text == "The", first.text  # 0.2 s of S1's 0.54 s: one word of five (by share)


async def test_speech_after_the_noise_holds_the_pause_until_it_is_known() -> None:
    stt = FakeSTT(responses=["stop please"])
    kit = _kit(stt=stt, turn={"paused_min_speech_ms": 250})  # the 150 ms sound is a noise
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.feed(speech(150) + silence(260))  # a noise: resume is due 0.3 s after the pause
        kit.feed(speech(200))  # ...but the caller speaks again before it
        await asyncio.sleep(0.4)
        assert kit.audio.queued_duration == 0.0  # not resumed over the caller
        kit.feed(speech(200) + silence(250))
        first = await kit.agent_final()
        kit.audio.release()
        await kit.agent_final(2)
    assert first.interrupted is True


async def test_without_a_timeout_a_barge_in_stops_the_agent_at_once() -> None:
    kit = _kit(turn={"false_interruption_timeout": 0})
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.feed(speech(150))
        first = await kit.agent_final()
        kit.feed(silence(300))
    assert first.interrupted is True
    assert kit.pipeline.record()["counters"]["barge_ins"] == 1


class _Probs(VADStream):
    def __init__(self, p: float) -> None:
        self._p = p

    @property
    def window_seconds(self) -> float:
        return 0.01

    def push(self, pcm: PCM) -> list[float]:
        return [self._p if abs(int(pcm[0])) > 1000 else 0.0]


def test_speech_confidence_is_the_mean_probability_of_the_speech_windows() -> None:
    import numpy as np

    det = TurnDetector(speaker=USER, vad=_Probs(0.6), config=TurnConfig(vad_threshold=0.5))
    for f in speech(100):
        det.push(np.frombuffer(f.data, dtype=np.int16))
    assert det.in_speech and abs(det.speech_confidence - 0.6) < 1e-9
    assert FakeVAD  # the loud fake VAD says 1.0: confident speech


async def test_unconfident_speech_does_not_pause_the_agent() -> None:
    kit = _kit(turn={"barge_in_confidence": 0.9})
    kit.pipeline._hearing._vad = type("V", (FakeVAD,), {"stream": lambda self: _Probs(0.6)})()
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        kit.feed(speech(200))
        await asyncio.sleep(0.05)
        assert kit.audio.cleared == 0
        kit.feed(silence(300))
        kit.audio.release()
        await kit.agent_final()


@pytest.mark.parametrize("fast_ms", [120, TurnConfig().barge_in_fast_ms])  # and the default
async def test_very_confident_speech_pauses_the_agent_at_barge_in_fast_ms(fast_ms: int) -> None:
    assert fast_ms > 0
    # 200 ms of sound, too short to be recognised even over the paused agent: a noise
    kit = _kit(turn={"barge_in_min_ms": 300, "barge_in_fast_ms": fast_ms,
                     "paused_min_speech_ms": 250})
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        paused_at = None
        for i, f in enumerate(speech(200)):  # the fake VAD says 1.0: very confident
            kit.pipeline.push_audio(USER, f)
            if kit.audio.cleared and paused_at is None:
                paused_at = i
        # fast_ms of 10 ms frames, not barge_in_min_ms (300)
        assert paused_at == math.ceil(fast_ms / 10) - 1
        kit.feed(silence(250))  # a noise after all: it resumes
        await wait_until(lambda: kit.audio.queued_duration > 0)
        kit.audio.release()
        final = await kit.agent_final()
    assert final.text == ANSWER and final.interrupted is None


async def test_fast_pause_needs_its_own_confidence() -> None:
    kit = _kit(turn={"barge_in_min_ms": 300, "barge_in_fast_ms": 120,
                     "barge_in_confidence": 0.5, "barge_in_fast_confidence": 0.9})
    kit.pipeline._hearing._vad = type("V", (FakeVAD,), {"stream": lambda self: _Probs(0.6)})()
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me")
        await _speaking(kit)
        paused_at = None
        for i, f in enumerate(speech(400)):
            kit.pipeline.push_audio(USER, f)
            if kit.audio.cleared and paused_at is None:
                paused_at = i
        assert paused_at == 29  # confident enough only for the usual 300 ms rule
        kit.feed(silence(300))
        kit.audio.release()
        await kit.agent_final(2)


def test_only_backchannels_are_whole_words_and_phrases_of_the_list() -> None:
    from agents.pipeline.bargein import only_backchannels
    from agents.pipeline.config import BACKCHANNELS

    words = list(BACKCHANNELS)
    for text in ("Mm-hmm.", "Mm-hmm, okay.", "Uh-huh, yeah!", "I see.", "HM?"):
        assert only_backchannels(text, words), text
    for text in ("Wait.", "Okay, wait.", "I see a problem.", "see", "", "...", "Ohh no"):
        assert not only_backchannels(text, words), text
    assert not only_backchannels("Mm-hmm.", [])


def test_a_detector_over_the_paused_agent_keeps_a_short_utterance_once() -> None:
    import numpy as np

    from agents.pipeline.turns import SpeechDiscarded, TurnEnded

    det = TurnDetector(speaker=USER, vad=_Probs(0.9),
                       config=TurnConfig(min_speech_ms=250, paused_min_speech_ms=64))

    def utterance(ms: int) -> list[object]:
        events: list[object] = []
        for f in speech(ms) + silence(600):
            events += det.push(np.frombuffer(f.data, dtype=np.int16))
        return [e for e in events if isinstance(e, TurnEnded | SpeechDiscarded)]

    det.words_decide = True  # as the pipeline sets it while the agent is paused
    assert [type(e) for e in utterance(150)] == [TurnEnded]
    assert not det.words_decide  # for that utterance only
    assert [type(e) for e in utterance(150)] == [SpeechDiscarded]
    det.words_decide = True
    assert [type(e) for e in utterance(40)] == [SpeechDiscarded]  # under 64 ms: still a noise
