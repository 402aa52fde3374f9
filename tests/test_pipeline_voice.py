"""The voice pipeline end to end with fake providers: turns, transcripts, status, speech."""

from __future__ import annotations

import asyncio

import numpy as np
from fakes import (
    Delay,
    FakeAudioOutput,
    FakeLLM,
    FakeMessageOutput,
    FakeSTT,
    FakeTTS,
    silence,
    speech,
)
from livekit import rtc
from pipeline_kit import AGENT, USER, make_kit, pipeline_tasks, running, wait_until

from agents.config import PersonaConfig
from agents.messages import TodoItem
from agents.providers.base import CallPolicy, ImagePart
from agents.providers.errors import ProviderConnectionError, ProviderStatusError


async def test_voice_turn_gives_user_transcript_status_cycle_and_spoken_answer() -> None:
    kit = make_kit(llm=FakeLLM(default="Sure thing, I can help. What is your name?"))
    async with running(kit):
        kit.feed(speech(500) + silence(300))
        final = await kit.agent_final()
    user = kit.msgs.transcripts(USER)
    assert [u.text for u in user] == ["hello there"] and user[0].is_final
    assert kit.msgs.statuses() == ["listening", "thinking", "speaking", "listening"]
    agent = kit.msgs.transcripts(AGENT)
    assert final.text == "Sure thing, I can help. What is your name?"
    assert [a.is_final for a in agent] == [False, False, True]
    assert agent[0].text == "Sure thing, I can help."
    assert len({a.transcript_id for a in agent}) == 1
    assert kit.tts.texts == ["Sure thing, I can help.", "What is your name?"]
    assert kit.audio.frames and all(f.samples_per_channel == 320 for f in kit.audio.frames)
    expected = sum(kit.tts.duration(t) for t in kit.tts.texts)
    assert abs(kit.audio.captured_seconds - expected) < 0.05
    metrics = kit.msgs.of("agent_metrics")[0].data
    stages = metrics.stages
    order = ["end_of_speech", "turn_decided", "final_transcript", "first_token", "first_audio",
             "done"]
    assert all(s in stages for s in order), stages
    assert [stages[s] for s in order] == sorted(stages[s] for s in order)
    assert metrics.kind == "voice" and not metrics.interrupted


async def test_audio_dropped_in_the_trailing_silence_does_not_delay_the_turn() -> None:
    # The process fell behind after the caller stopped talking and dropped 200 ms: with the
    # 100 ms of silence heard before, the 200 ms window is over; no later frame is needed.
    kit = make_kit(llm=FakeLLM(default="Sure."))
    async with running(kit):
        kit.feed(speech(500) + silence(100))
        await asyncio.sleep(0.05)
        assert kit.stt.calls == []
        kit.pipeline.audio_gap(USER, 200)
        await kit.agent_final()
    assert [u.text for u in kit.msgs.transcripts(USER)] == ["hello there"]


async def test_speech_shorter_than_minimum_is_not_a_turn() -> None:
    kit = make_kit()
    async with running(kit):
        kit.feed(speech(50) + silence(300))
        await asyncio.sleep(0.05)
        assert kit.stt.calls == []
        kit.pipeline.push_text(USER, "hi")
        await kit.agent_final()
    assert kit.msgs.statuses()[:2] == ["listening", "thinking"]


async def test_interim_transcripts_share_the_final_transcript_id() -> None:
    stt = FakeSTT(interim=True, script=lambda pcm: f"words {pcm.size // 1600}")
    kit = make_kit(stt=stt, steps=["stt", "return"])
    async with running(kit):
        await kit.feed_live(speech(1000))
        await kit.msgs.wait_for(lambda m: m.type == "transcript_chunk")
        await kit.feed_live(silence(300))
        await kit.msgs.wait_for(lambda m: m.type == "transcript_chunk" and m.data.is_final)
    chunks = kit.msgs.transcripts(USER)
    assert not chunks[0].is_final and chunks[-1].is_final
    assert len({c.transcript_id for c in chunks}) == 1
    assert len({c.chunk_id for c in chunks}) == len(chunks)


async def test_user_text_is_a_turn_and_is_echoed_as_a_final_transcript() -> None:
    kit = make_kit(llm=FakeLLM(default="Got it, thanks."))
    async with running(kit):
        kit.pipeline.push_text(USER, "  my order is late ")
        kit.pipeline.push_text(USER, "   ")  # nothing: ignored
        kit.pipeline.push_text(USER, "x" * 5000)  # too long: ignored
        final = await kit.agent_final()
    assert final.text == "Got it, thanks."
    assert [u.text for u in kit.msgs.transcripts(USER)] == ["my order is late"]
    last_user = [m for m in kit.llm.requests[0].messages if m.role == "user"][-1]
    assert last_user.content == "my order is late" and last_user.name == USER
    assert kit.msgs.of("agent_metrics")[0].data.kind == "text"


async def test_transcription_only_pipeline_transcribes_every_turn_and_never_speaks() -> None:
    kit = make_kit(steps=["stt", "return"], stt=FakeSTT(responses=["one", "two"], delay=0.02))
    async with running(kit):
        kit.feed(speech(300) + silence(250) + speech(300) + silence(250))
        await kit.msgs.wait_for(lambda m: len(kit.msgs.transcripts(USER)) == 2)
    assert [t.text for t in kit.msgs.transcripts(USER)] == ["one", "two"]
    assert kit.msgs.statuses() == ["listening"]
    assert kit.llm.requests == [] and kit.audio.frames == []
    assert kit.msgs.transcripts(AGENT) == []
    assert len(kit.msgs.of("agent_metrics")) == 2


async def test_text_answers_without_tts_go_out_as_transcript_only() -> None:
    kit = make_kit(steps=["stt", "llm", "return"], llm=FakeLLM(default="First part here. Second."))
    async with running(kit):
        kit.feed(speech(300) + silence(250))
        final = await kit.agent_final()
    assert final.text == "First part here. Second."
    assert kit.audio.frames == [] and kit.tts.texts == []
    assert "speaking" not in kit.msgs.statuses()


async def test_greeting_is_spoken_at_start() -> None:
    persona = PersonaConfig(greeting="Hello, I am the intake assistant.", voice="amy")
    kit = make_kit(persona=persona)
    async with running(kit):
        final = await kit.agent_final()
    assert final.text == "Hello, I am the intake assistant."
    assert kit.tts.voices == ["amy"]
    assert kit.msgs.statuses() == ["speaking", "listening"]
    first = kit.msgs.messages[0]
    assert first.type == "todo_list"


async def test_provider_failure_says_fallback_line_and_goes_on() -> None:
    llm = FakeLLM(scripts=[[ProviderConnectionError("down", provider="fake-llm")],
                           ["Now it works."]])
    kit = make_kit(llm=llm, fallback_line="Sorry, say again?")
    async with running(kit):
        kit.pipeline.push_text(USER, "first")
        first = await kit.agent_final()
        kit.pipeline.push_text(USER, "second")
        second = await kit.agent_final(2)
    assert first.text == "Sorry, say again?"
    assert second.text == "Now it works."
    failed = [m.data for m in kit.msgs.of("agent_status") if m.data.message]
    assert failed[0].status == "listening" and failed[0].message == "llm_failed"
    assert kit.pipeline.record()["counters"]["provider_failures"] == 1


async def test_model_timeout_falls_back() -> None:
    slow = FakeLLM(scripts=[[Delay(5), "late"]],
                   policy=CallPolicy(timeout=0.05, chunk_timeout=0.05, attempts=1))
    kit = make_kit(llm=slow, fallback_line="One moment, please repeat.")
    async with running(kit):
        kit.pipeline.push_text(USER, "hello")
        final = await kit.agent_final()
    assert final.text == "One moment, please repeat."
    assert kit.msgs.of("agent_metrics")[0].data.stages.get("first_token") is None


async def test_speech_failure_sends_the_fallback_as_text() -> None:
    tts = FakeTTS(fail_times=2, error=ProviderStatusError("boom", status_code=500))
    kit = make_kit(tts=tts, fallback_line="Sorry about that.")
    async with running(kit):
        kit.pipeline.push_text(USER, "hi")
        final = await kit.agent_final()
    assert final.text == "Sorry about that."
    assert kit.audio.frames == []


async def test_repeated_failures_end_the_conversation_with_a_reason() -> None:
    stt = FakeSTT(script=lambda pcm: ProviderConnectionError("no stt", provider="fake-stt"))
    kit = make_kit(stt=stt, max_consecutive_failures=2)
    async with running(kit):
        kit.feed(speech(300) + silence(250))
        await kit.agent_final()
        kit.feed(speech(300) + silence(250))
        assert kit.task is not None
        reason = await asyncio.wait_for(kit.task, 5)
    assert reason == "provider_failures"
    assert kit.pipeline.record()["end_reason"] == "provider_failures"
    assert pipeline_tasks() == []


async def test_say_speaks_when_idle_and_refuses_while_busy() -> None:
    kit = make_kit(audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        line = asyncio.create_task(kit.pipeline.say("I can see a red mug."))
        await kit.status("speaking")
        assert kit.pipeline.busy()
        assert await kit.pipeline.say("Another remark.") is False
        kit.audio.release()
        assert await line is True
    assert kit.msgs.of("agent_metrics")[0].data.kind == "vision"
    assert [f.text for f in kit.agent_finals()] == ["I can see a red mug."]


class _Frames:
    def __init__(self) -> None:
        self.video: list[tuple[str, str]] = []

    def latest_images(self, speaker: str) -> list[ImagePart]:
        return [ImagePart(jpeg=b"\xff\xd8jpeg", width=2, height=2)]

    def push_video(self, speaker: str, source: str, frame: rtc.VideoFrame) -> None:
        self.video.append((speaker, source))


async def test_frames_attach_to_the_user_message_when_the_model_has_vision() -> None:
    frames = _Frames()
    kit = make_kit(llm=FakeLLM(vision=True), frames=frames)
    plain = make_kit(llm=FakeLLM(vision=False), frames=frames)
    for k in (kit, plain):
        async with running(k):
            k.pipeline.push_text(USER, "what do you see?")
            await k.agent_final()
    user = [m for m in kit.llm.requests[0].messages if m.role == "user"][-1]
    assert len(user.images) == 1
    user = [m for m in plain.llm.requests[0].messages if m.role == "user"][-1]
    assert user.images == ()
    frame = rtc.VideoFrame(2, 2, rtc.VideoBufferType.RGBA, bytes(16))
    kit.pipeline.push_video(USER, "camera", frame)
    assert frames.video == []  # the conversation has ended: nothing forwarded
    live = make_kit(frames=frames)
    live.pipeline.push_video(USER, "camera", frame)
    assert frames.video == [(USER, "camera")]


async def test_cancelling_run_leaves_no_task_behind() -> None:
    kit = make_kit(llm=FakeLLM(scripts=[[Delay(10), "never"]]))
    async with running(kit):
        kit.pipeline.push_text(USER, "hi")
        await kit.status("thinking")
        assert kit.task is not None
        kit.task.cancel()
        try:
            await kit.task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("run() must give CancelledError back")
    assert kit.llm.cancelled == 1
    assert pipeline_tasks() == []


async def test_bad_audio_and_unknown_speakers_do_not_break_the_call() -> None:
    kit = make_kit()
    async with running(kit):
        stereo48 = rtc.AudioFrame(
            data=np.zeros(960, dtype=np.int16).tobytes(), sample_rate=48000, num_channels=1,
            samples_per_channel=960,
        )
        kit.pipeline.push_audio(USER, stereo48)
        kit.pipeline.speaker_left("nobody")
        kit.feed(speech(300))
        kit.pipeline.speaker_left(USER)  # mid-utterance: dropped
        await asyncio.sleep(0.05)
        assert kit.stt.calls == []
        kit.feed(speech(300) + silence(250))
        await kit.agent_final()
    assert kit.stt.calls


async def test_publish_failure_does_not_end_the_call() -> None:
    kit = make_kit(msgs=FakeMessageOutput(fail_types={"agent_metrics"}))
    async with running(kit):
        kit.pipeline.push_text(USER, "one")
        await kit.agent_final()
        kit.pipeline.push_text(USER, "two")
        await kit.agent_final(2)
    assert kit.msgs.of("agent_metrics") == []


async def test_record_keeps_traces_transcript_and_todo() -> None:
    todo = [TodoItem(id="name", description="Caller name", required=True)]
    kit = make_kit(todo=todo, llm=FakeLLM(default="Hi there, friend."))
    async with running(kit):
        kit.pipeline.push_text(USER, "hello")
        await kit.agent_final()
    rec = kit.pipeline.record()
    assert rec["turns"][0]["kind"] == "text" and "done" in rec["turns"][0]["stages"]
    assert [(t["role"], t["text"]) for t in rec["transcript"]] == [
        ("user", "hello"), ("agent", "Hi there, friend.")
    ]
    assert rec["todo"]["items"][0]["id"] == "name"
    assert kit.msgs.of("todo_list")[0].data.items[0].id == "name"


async def test_each_speaker_has_their_own_turns_and_attribution() -> None:
    stt = FakeSTT(script=lambda pcm: "long one" if pcm.size > 16 * 600 else "short one")
    kit = make_kit(stt=stt, steps=["stt", "return"])
    async with running(kit):
        for a, b in zip(speech(300) + silence(250), speech(800) + silence(250), strict=False):
            kit.pipeline.push_audio("alice", a)
            kit.pipeline.push_audio("bob", b)
        kit.feed(silence(250), speaker="bob")
        await kit.msgs.wait_for(lambda m: len(kit.msgs.of("transcript_chunk")) == 2)
    said = {(c.participant_id, c.text) for c in (m.data for m in kit.msgs.of("transcript_chunk"))}
    assert said == {("alice", "short one"), ("bob", "long one")}


async def test_say_before_the_conversation_runs_is_refused() -> None:
    kit = make_kit()
    assert await kit.pipeline.say("hello") is False
    assert kit.tts.texts == []


async def test_first_sentence_is_spoken_while_the_model_is_still_generating() -> None:
    llm = FakeLLM(scripts=[["The first sentence is here. And the sec", Delay(10), "ond."]])
    kit = make_kit(llm=llm, audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        kit.pipeline.push_text(USER, "go")
        await kit.status("speaking")
        assert kit.tts.texts == ["The first sentence is here."]
        assert llm.completed == 0 and kit.audio.frames
        interim = kit.msgs.transcripts(AGENT)[0]
        assert not interim.is_final and interim.text == "The first sentence is here."


async def test_a_provider_raising_an_unexpected_exception_is_a_failure_not_a_crash() -> None:
    stt = FakeSTT(responses=[RuntimeError("vendor bug")])
    llm = FakeLLM(scripts=[[KeyError("vendor bug")]])
    kit = make_kit(stt=stt, llm=llm, fallback_line="Sorry, once more?")
    async with running(kit):
        kit.feed(speech(300) + silence(250))
        first = await kit.agent_final()
        kit.pipeline.push_text(USER, "hello")
        second = await kit.agent_final(2)
        kit.pipeline.push_text(USER, "again")
        third = await kit.agent_final(3)
    assert (first.text, second.text, third.text) == (
        "Sorry, once more?", "Sorry, once more?", "Okay.")
    notes = [m.data.message for m in kit.msgs.of("agent_status") if m.data.message]
    assert notes == ["stt_failed", "llm_failed"]
    assert kit.task is not None and kit.task.cancelled()  # ran until the test stopped it


async def test_next_sentence_is_synthesised_while_the_current_one_plays() -> None:
    llm = FakeLLM(default="The first sentence is here. The second one follows it.")
    kit = make_kit(llm=llm, audio=FakeAudioOutput(auto_play=False, max_queue=0.1))
    async with running(kit):
        kit.pipeline.push_text(USER, "go")
        await wait_until(lambda: len(kit.tts.texts) == 2)
        # the output's queue is full long before the first sentence has been handed over
        assert kit.audio.captured_seconds < kit.tts.duration("The first sentence is here.")
        kit.audio.release()
        final = await kit.agent_final()
    assert final.text == "The first sentence is here. The second one follows it."


async def test_speech_failure_on_a_later_sentence_keeps_what_was_said() -> None:
    class FailSecond(FakeTTS):
        async def _synthesize_impl(self, text: str, *, voice: str | None):  # type: ignore[override]
            if text.startswith("Second"):
                raise ProviderStatusError("boom", status_code=400)
            async for chunk in super()._synthesize_impl(text, voice=voice):
                yield chunk

    kit = make_kit(tts=FailSecond(), llm=FakeLLM(default="First one is fine. Second breaks it."),
                   fallback_line="Sorry about that.")
    async with running(kit):
        kit.pipeline.push_text(USER, "go")
        final = await kit.agent_final()
    assert final.text == "First one is fine. Sorry about that."
    assert kit.pipeline.record()["counters"]["provider_failures"] == 1


async def test_model_failure_mid_answer_finishes_the_sentences_already_made() -> None:
    llm = FakeLLM(scripts=[["The first part is ready. ",
                            ProviderConnectionError("dropped", provider="fake-llm")]])
    kit = make_kit(llm=llm, tts=FakeTTS(delay=0.05),  # still synthesising when the model fails
                   fallback_line="Sorry, I lost my train of thought.")
    async with running(kit):
        kit.pipeline.push_text(USER, "go")
        final = await kit.agent_final()
    assert final.text == "The first part is ready. Sorry, I lost my train of thought."
    assert kit.tts.texts == ["The first part is ready.", "Sorry, I lost my train of thought."]
