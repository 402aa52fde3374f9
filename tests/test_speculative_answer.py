"""The model's answer started at a pause, before the turn is decided (turn.speculative_answer):
kept and played when the turn ends in that pause, dropped without a trace when the speaker goes
on, never running a tool, dropped when the context changed; and speech starting on the answer's
first clause. Fakes only (in-memory)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import numpy as np
from fakes import Delay, FakeLLM, FakeSTT, FakeTTS, silence, speech
from pipeline_kit import AGENT, USER, make_kit, pipeline_tasks, running, wait_until

from agents.messages import TodoItem
from agents.providers.base import ToolCall

SLOW_TURN = {"silence_ms": 600, "pause_ms": 200}
ANSWER = "I'm a scripted offline responder, not a language model, sorry."
CLAUSE = "I'm a scripted offline responder,"
TODO = [TodoItem(id="name", description="Caller name", required=True)]


def _complete_name() -> ToolCall:
    return ToolCall(id="c1", name="update_todo",
                    arguments=json.dumps({"id": "name", "status": "completed", "note": "Ada"}))


async def test_answer_started_at_the_pause_is_kept_and_its_held_speech_played() -> None:
    stt = FakeSTT(delay=0.05)
    words: list[str | Delay] = [w + " " for w in ANSWER.split()]
    words.insert(6, Delay(0.3))  # the rest streams after the turn has ended
    llm = FakeLLM(scripts=[words])
    kit = make_kit(stt=stt, llm=llm, turn=SLOW_TURN)
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        # the turn is not over, but the model has answered and the first clause is synthesised
        await wait_until(lambda: len(llm.requests) == 1 and kit.tts.texts == [CLAUSE])
        assert kit.msgs.transcripts(USER) == [] and kit.msgs.transcripts(AGENT) == []
        assert kit.audio.frames == [], "speculative speech reached the room"
        assert "thinking" not in kit.msgs.statuses()
        await kit.feed_live(silence(400))
        final = await kit.agent_final()
    assert final.text == ANSWER.strip()
    assert len(llm.requests) == 1, "the model was asked again for the same turn"
    # the held clause once (ahead, while the turn was decided), then the rest, once
    assert kit.tts.texts == [CLAUSE, ANSWER[len(CLAUSE) + 1 :]]
    heard = kit.tts.duration(CLAUSE) + kit.tts.duration(ANSWER[len(CLAUSE) + 1 :])
    assert abs(kit.audio.captured_seconds - heard) < 0.05  # the clause once, then the rest
    record = kit.pipeline.record()
    assert record["turns"][-1]["speculation"] == "kept"
    assert record["speculative_answers"] == {"started": 1, "kept": 1}
    user = llm.requests[0].messages[-1]
    assert (user.role, user.content, user.name) == ("user", "hello there", USER)


async def test_answer_is_dropped_without_a_trace_when_the_speaker_goes_on() -> None:
    stt = FakeSTT(responses=["I want", "a table"], delay=0.02)  # the rest recognised alone
    llm = FakeLLM(scripts=[["Nobody must hear this guess, ", Delay(5), "really."],
                           ["A table, fine."]])
    kit = make_kit(stt=stt, llm=llm, turn=SLOW_TURN)
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: len(llm.requests) == 1 and len(kit.tts.texts) == 1)
        await kit.feed_live(speech(300) + silence(650))  # the speaker went on
        final = await kit.agent_final()
        await wait_until(lambda: not [t for t in pipeline_tasks() if "speculative" in t.get_name()])
    assert final.text == "A table, fine."
    assert llm.cancelled == 1, "the dropped answer's stream was not closed"
    assert [m.text for m in kit.agent_finals()] == ["A table, fine."]
    assert all("guess" not in m.text for m in kit.msgs.transcripts(AGENT))
    # nothing of the guess reached the room or the chat context
    assert abs(kit.audio.captured_seconds - kit.tts.duration("A table, fine.")) < 0.05
    second = llm.requests[1].messages
    assert [m.content for m in second if m.role == "user"] == ["I want a table"]
    assert not [m for m in second if m.role == "assistant"]
    record = kit.pipeline.record()
    assert record["speculative_answers"] == {"started": 2, "dropped": 1, "kept": 1}
    assert record["turns"][-1]["speculation"] == "kept"  # the second pause's answer


async def test_turn_notes_its_answer_was_dropped_when_no_pause_was_kept() -> None:
    stt = FakeSTT(script=lambda pcm: "I want" if pcm.size < 16 * 700 else "I want a table")
    llm = FakeLLM(scripts=[["A guess."], ["A table, fine."]])
    kit = make_kit(stt=stt, llm=llm,
                   turn={**SLOW_TURN, "speculative_answer": "text", "max_turn_seconds": 2})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: len(llm.requests) == 1)
        await kit.feed_live(speech(1600))  # the speaker goes on until the turn is cut
        final = await kit.agent_final()
    assert final.text == "A table, fine."
    assert kit.tts.texts == ["A table, fine."]  # text mode: nothing synthesised ahead
    record = kit.pipeline.record()
    assert record["turns"][-1]["speculation"] == "dropped"
    assert record["speculative_answers"] == {"started": 1, "dropped": 1}


async def test_a_speculative_answer_never_runs_a_tool() -> None:
    llm = FakeLLM(scripts=[[_complete_name()],  # the pause's answer wants a tool: it stops
                           [_complete_name()], ["Thanks, Ada."]])  # asked again after the turn
    kit = make_kit(stt=FakeSTT(delay=0.02), llm=llm, todo=TODO, turn=SLOW_TURN)
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: kit.pipeline.record()["speculative_answers"].get("tool") == 1)
        assert kit.tools.board.items[0].status == "pending", "a tool ran speculatively"
        assert len(kit.msgs.of("todo_list")) == 1  # only the one published on join
        await kit.feed_live(silence(400))
        final = await kit.agent_final()
    assert final.text == "Thanks, Ada."
    assert len(llm.requests) == 3  # the speculative one, then the turn's two rounds
    assert kit.tools.board.items[0].status == "completed"
    assert len(kit.msgs.of("todo_list")) == 2  # the tool ran once, after the turn ended
    record = kit.pipeline.record()
    assert record["turns"][-1]["speculation"] == "tool"
    assert record["speculative_answers"] == {"started": 1, "tool": 1}


async def test_answer_to_an_outdated_context_is_dropped_and_asked_again() -> None:
    llm = FakeLLM(scripts=[["Stale answer."], ["Fresh answer."]])
    kit = make_kit(stt=FakeSTT(delay=0.02), llm=llm, todo=TODO, turn=SLOW_TURN)
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: len(llm.requests) == 1)
        kit.tools.execute(_complete_name())  # the todo list changed meanwhile
        await kit.feed_live(silence(400))
        final = await kit.agent_final()
    assert final.text == "Fresh answer."
    assert len(llm.requests) == 2
    assert kit.pipeline.record()["turns"][-1]["speculation"] == "mismatch"


async def test_no_speculative_answer_while_the_agent_is_busy_or_when_off() -> None:
    llm = FakeLLM(default="Fine.")
    kit = make_kit(stt=FakeSTT(delay=0.02), llm=llm,
                   turn={**SLOW_TURN, "speculative_answer": "off"})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(650))
        await kit.agent_final()
    assert kit.pipeline.record()["speculative_answers"] == {"started": 0}
    assert "speculation" not in kit.pipeline.record()["turns"][-1]


async def test_speech_starts_on_the_first_clause_of_the_answer() -> None:
    llm = FakeLLM(scripts=[[w + " " for w in ANSWER.split()]])  # streamed word by word
    kit = make_kit(llm=llm, turn={**SLOW_TURN, "speculative": False})
    async with running(kit):
        await kit.feed_live(speech(300) + silence(650))
        final = await kit.agent_final()
    assert final.text == ANSWER
    assert kit.tts.texts[0] == CLAUSE  # not the whole sentence
    assert kit.tts.texts[1] == "not a language model, sorry."


async def test_the_held_synthesis_finishes_before_the_next_piece_is_synthesised() -> None:
    llm = FakeLLM(scripts=[[w + " " for w in ANSWER.split()]])
    kit = make_kit(stt=FakeSTT(delay=0.02), llm=llm, tts=FakeTTS(delay=0.2), turn=SLOW_TURN)
    spans: list[tuple[str, float, float]] = []
    synthesize = kit.tts._synthesize_impl

    async def timed(text: str, *, voice: str | None) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async for chunk in synthesize(text, voice=voice):
            yield chunk
        spans.append((text, start, loop.time()))

    kit.tts._synthesize_impl = timed  # type: ignore[method-assign]
    async with running(kit):
        await kit.feed_live(speech(300) + silence(250))
        await wait_until(lambda: kit.tts.texts == [CLAUSE])
        await kit.feed_live(silence(400))  # the turn ends while the held clause is made
        await kit.agent_final()
    assert [s[0] for s in spans] == [CLAUSE, ANSWER[len(CLAUSE) + 1 :]]
    assert spans[1][1] >= spans[0][2], "two syntheses ran at once"
