"""Barge-in: true interruptions stop the agent at once and cut its transcript at what was
heard; short sounds over the agent are false interruptions and the agent goes on."""

from __future__ import annotations

import asyncio

from fakes import Delay, FakeAudioOutput, FakeLLM, FakeSTT, FakeTTS, silence, speech
from pipeline_kit import AGENT, USER, Kit, make_kit, running, wait_until

S1 = "The first sentence is here."
S2 = "The second sentence is longer than that."
S3 = "The third one ends it."
ANSWER = f"{S1} {S2} {S3}"


async def speaking_everything(kit: Kit) -> None:
    """The whole answer has been handed to the audio output (none of it played yet)."""
    total = sum(kit.tts.duration(s) for s in (S1, S2, S3))
    await wait_until(lambda: abs(kit.audio.captured_seconds - total) < 0.03)


async def test_barge_in_clears_audio_on_the_deciding_frame_and_cuts_the_transcript() -> None:
    kit = make_kit(llm=FakeLLM(scripts=[[ANSWER]]), audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        kit.pipeline.push_text(USER, "tell me three things")
        await speaking_everything(kit)
        kit.audio.advance(kit.tts.duration(S1) + kit.tts.duration(S2) / 2)
        decided_at = None
        for i, frame in enumerate(speech(400)):
            kit.pipeline.push_audio(USER, frame)
            if kit.audio.cleared and decided_at is None:
                decided_at = i
                assert kit.audio.queued_duration == 0.0
        # barge_in_min_ms=300 of 10 ms frames: the 30th frame decides, and clears the queue.
        assert decided_at == 29
        kit.feed(silence(250))
        kit.audio.release()
        first = await kit.agent_final()
        second = await kit.agent_final(2)
    assert first.text == f"{S1} The second sentence" and first.interrupted is True
    assert second.interrupted is None
    assert second.text == "Okay."
    assert kit.pipeline.record()["counters"]["barge_ins"] == 1
    metrics = kit.msgs.of("agent_metrics")[0].data
    assert metrics.interrupted and "interrupted" in metrics.stages
    statuses = kit.msgs.statuses()
    assert statuses[:4] == ["listening", "thinking", "speaking", "listening"]
    # the model sees what the caller heard, then what the caller said
    history = [(m.role, m.content) for m in kit.llm.requests[1].messages[1:]]
    assert history == [("user", "tell me three things"),
                       ("assistant", f"{S1} The second sentence"), ("user", "hello there")]
    rec = kit.pipeline.record()["transcript"]
    assert rec[1] == {"role": "agent", "text": first.text, "interrupted": True,
                      "turn_id": metrics.turn_id}


async def test_a_voice_turn_cut_by_the_next_turn_is_recorded_once_with_what_was_heard() -> None:
    # The turn task is cancelled inside the voice turn (the caller's next turn): its reply
    # finished all the same, and the turn is reported as any other.
    kit = make_kit(llm=FakeLLM(scripts=[[ANSWER]]), audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        kit.feed(speech(300) + silence(600))
        await speaking_everything(kit)
        kit.audio.advance(kit.tts.duration(S1) + kit.tts.duration(S2) / 2)
        kit.feed(speech(400) + silence(600))
        kit.audio.release()
        await kit.agent_final(2)
    metrics = [m.data for m in kit.msgs.of("agent_metrics")]
    assert len(metrics) == len({m.turn_id for m in metrics}) == 2, metrics
    assert [m.interrupted for m in metrics] == [True, False]
    agent = [(t["text"], t["interrupted"]) for t in kit.pipeline.record()["transcript"]
             if t["role"] == "agent"]
    assert agent == [(f"{S1} The second sentence", True), ("Okay.", False)]
    assert len(kit.pipeline.record()["turns"]) == 2


async def test_short_sounds_over_the_agent_are_false_interruptions() -> None:
    kit = make_kit(llm=FakeLLM(scripts=[[ANSWER]]), audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        kit.pipeline.push_text(USER, "go on")
        await speaking_everything(kit)
        kit.audio.advance(0.3)
        kit.feed(speech(200) + silence(250))  # an "mhm": a turn's length, under barge-in
        kit.feed(speech(50) + silence(250))  # a click: not even a turn
        await asyncio.sleep(0.02)
        assert kit.audio.cleared == 0
        kit.audio.release()
        final = await kit.agent_final()
    assert final.text == ANSWER
    assert kit.stt.calls == []
    assert kit.pipeline.record()["counters"] == {
        "barge_ins": 0, "false_interruptions": 2, "provider_failures": 0}
    assert not kit.msgs.of("agent_metrics")[0].data.interrupted


async def test_speech_while_thinking_cancels_generation_in_flight() -> None:
    llm = FakeLLM(scripts=[[Delay(10), "never said"], ["Second answer."]])
    kit = make_kit(llm=llm)
    async with running(kit):
        kit.pipeline.push_text(USER, "first question")
        await kit.status("thinking")
        await wait_until(lambda: len(llm.requests) == 1)
        kit.feed(speech(150) + silence(250))
        final = await kit.agent_final()
    assert final.text == "Second answer."
    assert llm.cancelled == 1
    assert [f.text for f in kit.agent_finals()] == ["Second answer."]
    assert kit.msgs.of("agent_metrics")[0].data.interrupted


async def test_words_of_a_turn_interrupted_during_recognition_join_the_next_turn() -> None:
    stt = FakeSTT(delay=0.2, responses=["first and second"])
    kit = make_kit(stt=stt)
    async with running(kit):
        kit.feed(speech(300) + silence(250))
        await wait_until(lambda: len(stt.calls) == 1)
        kit.feed(speech(300) + silence(250))
        await kit.agent_final()
    assert len(stt.calls) == 2 and stt.calls[1] > stt.calls[0]
    assert [u.text for u in kit.msgs.transcripts(USER)] == ["first and second"]


async def test_text_turn_interrupts_the_agent_and_is_answered() -> None:
    kit = make_kit(llm=FakeLLM(scripts=[[ANSWER], ["Answer two."]]),
                   audio=FakeAudioOutput(auto_play=False), tts=FakeTTS())
    async with running(kit):
        kit.pipeline.push_text(USER, "one")
        await speaking_everything(kit)
        kit.pipeline.push_text(USER, "two")
        await kit.agent_final()
        kit.audio.release()
        second = await kit.agent_final(2)
    assert kit.audio.cleared == 1
    assert kit.agent_finals()[0].text == ""
    assert second.text == "Answer two."
    assert [t.data.participant_id for t in kit.msgs.of("transcript_chunk")].count(AGENT) >= 3


async def test_noise_that_stops_the_agent_while_thinking_does_not_lose_the_answer() -> None:
    llm = FakeLLM(scripts=[[Delay(10), "never said"], ["The answer."]])
    kit = make_kit(llm=llm, stt=FakeSTT(responses=[""]))  # the noise transcribes to nothing
    async with running(kit):
        kit.pipeline.push_text(USER, "my question")
        await wait_until(lambda: len(llm.requests) == 1)
        kit.feed(speech(150) + silence(250))
        final = await kit.agent_final()
    assert final.text == "The answer."
    assert [m.content for m in llm.requests[1].messages if m.role == "user"] == ["my question"]
    assert kit.pipeline.record()["counters"]["false_interruptions"] == 1


def test_pause_due_takes_the_minimum_or_the_fast_rule() -> None:
    from agents.pipeline.bargein import pause_due
    from agents.pipeline.config import TurnConfig

    slow = TurnConfig(barge_in_min_ms=200, barge_in_confidence=0.7, barge_in_fast_ms=0)
    assert not pause_due(slow, 190, 0.99, fast=True)
    assert pause_due(slow, 200, 0.7, fast=True)
    assert not pause_due(slow, 400, 0.69, fast=True)  # long but unsure: a noise
    quick = TurnConfig(barge_in_min_ms=200, barge_in_confidence=0.7, barge_in_fast_ms=64,
                       barge_in_fast_confidence=0.9)
    assert pause_due(quick, 64, 0.9, fast=True)
    assert not pause_due(quick, 64, 0.89, fast=True)  # not sure enough for the fast rule
    assert not pause_due(quick, 32, 0.99, fast=True)
    assert pause_due(quick, 200, 0.75, fast=True)  # the minimum rule still holds
    # Without a pause that can resume, only the minimum rule.
    assert not pause_due(quick, 64, 0.99, fast=False)
    assert pause_due(quick, 200, 0.99, fast=False)
