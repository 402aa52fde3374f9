"""The model's tools inside a turn: todo updates, ending the call, handing off, and what an
interruption does to a tool round (no orphaned tool messages, no double execution)."""

from __future__ import annotations

import asyncio
import json

from fakes import Delay, FakeAudioOutput, FakeLLM
from pipeline_kit import USER, make_kit, running, wait_until

from agents.messages import TodoItem
from agents.providers.base import ChatMessage, ToolCall

TODO = [TodoItem(id="name", description="Caller name", required=True)]


def complete_name(call_id: str = "c1") -> ToolCall:
    return ToolCall(id=call_id, name="update_todo",
                    arguments=json.dumps({"id": "name", "status": "completed", "note": "Ada"}))


def assert_no_orphans(messages: list[ChatMessage]) -> None:
    """Every tool call has its result right after it, and every result has its call."""
    pending: set[str] = set()
    for m in messages:
        if m.role == "tool":
            assert m.tool_call_id in pending, f"orphaned tool result {m.tool_call_id}"
            pending.discard(m.tool_call_id)
            continue
        assert not pending, f"tool calls without results: {pending}"
        pending = {c.id for c in m.tool_calls}
    assert not pending


async def test_tool_round_updates_todo_publishes_it_and_feeds_the_result_back() -> None:
    llm = FakeLLM(scripts=[["Let me note that. ", complete_name()], ["Thanks, Ada."]])
    kit = make_kit(llm=llm, todo=TODO)
    async with running(kit):
        kit.pipeline.push_text(USER, "I am Ada")
        final = await kit.agent_final()
    assert final.text == "Let me note that. Thanks, Ada."
    lists = kit.msgs.of("todo_list")
    assert [i.status for i in lists[0].data.items] == ["pending"]
    assert [i.status for i in lists[-1].data.items] == ["completed"]
    second = llm.requests[1].messages
    assert "<<TODO_LIST>>" in second[0].content and '"note": "Ada"' in second[0].content
    assert [m.role for m in second[1:]] == ["user", "assistant", "tool"]
    assert second[2].tool_calls[0].id == "c1" and second[2].content == "Let me note that."
    assert json.loads(second[3].content)["ok"] is True
    assert_no_orphans(second)
    assert [s.name for s in llm.requests[0].tools] == [
        "update_todo", "end_call", "handoff_to_human"]


async def test_interruption_before_the_tool_runs_keeps_neither_call_nor_result() -> None:
    llm = FakeLLM(scripts=[[complete_name(), Delay(10)], ["Fine."]])
    kit = make_kit(llm=llm, todo=TODO)
    async with running(kit):
        kit.pipeline.push_text(USER, "I am Ada")
        await kit.status("thinking")
        await wait_until(lambda: len(llm.requests) == 1)
        await asyncio.sleep(0.02)
        kit.pipeline.push_text(USER, "actually, wait")
        await kit.agent_final()
    messages = llm.requests[1].messages
    assert_no_orphans(messages)
    assert not any(m.tool_calls or m.role == "tool" for m in messages)
    assert kit.tools.board.items[0].status == "pending"  # never executed
    assert len(kit.msgs.of("todo_list")) == 1


async def test_interruption_after_a_tool_round_keeps_call_and_result_together() -> None:
    llm = FakeLLM(scripts=[[complete_name()], ["Noted your name. ", Delay(10)], ["Sure."]])
    kit = make_kit(llm=llm, todo=TODO, audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        kit.pipeline.push_text(USER, "I am Ada")
        heard = kit.tts.duration("Noted your name.")
        await wait_until(lambda: kit.audio.captured_seconds >= heard - 0.01)
        kit.audio.advance(heard)
        kit.pipeline.push_text(USER, "and my number")
        await kit.agent_final()
        kit.audio.release()
        await kit.agent_final(2)
    messages = llm.requests[2].messages
    assert_no_orphans(messages)
    assert [m.role for m in messages[1:]] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[4].content == "Noted your name."
    assert kit.tools.board.items[0].status == "completed"


async def test_end_call_says_goodbye_waits_for_playout_and_ends_the_conversation() -> None:
    end = ToolCall(id="e1", name="end_call", arguments='{"reason": "done"}')
    kit = make_kit(llm=FakeLLM(scripts=[["Thanks, goodbye for now.", end]]),
                   audio=FakeAudioOutput(auto_play=False))
    async with running(kit):
        kit.pipeline.push_text(USER, "that's all")
        await kit.status("speaking")
        await asyncio.sleep(0.02)
        assert kit.task is not None and not kit.task.done()  # still playing the goodbye
        kit.audio.release()
        reason = await asyncio.wait_for(kit.task, 5)
    assert reason == "call_ended"
    assert kit.tts.texts == ["Thanks, goodbye for now."]
    assert kit.agent_finals()[-1].text == "Thanks, goodbye for now."
    assert kit.audio.played == kit.audio.captured_seconds


async def test_silent_end_call_uses_the_goodbye_line() -> None:
    end = ToolCall(id="e1", name="end_call", arguments='{"reason": "done"}')
    kit = make_kit(llm=FakeLLM(scripts=[[end]]), goodbye_line="Bye now!")
    async with running(kit):
        kit.pipeline.push_text(USER, "bye")
        assert kit.task is not None
        assert await asyncio.wait_for(kit.task, 5) == "call_ended"
    assert kit.tts.texts == ["Bye now!"]
    assert kit.pipeline.record()["end_reason"] == "call_ended"


async def test_handoff_publishes_reason_and_summary_and_stops_answering() -> None:
    args = json.dumps({"reason": "asks for a person", "summary": "wants a refund"})
    hand = ToolCall(id="h1", name="handoff_to_human", arguments=args)
    kit = make_kit(llm=FakeLLM(scripts=[[hand]]), handoff_line="Connecting you now.")
    async with running(kit):
        kit.pipeline.push_text(USER, "a human please")
        assert kit.task is not None
        assert await asyncio.wait_for(kit.task, 5) == "handoff"
        kit.pipeline.push_text(USER, "hello?")
        await asyncio.sleep(0.02)
    (msg,) = kit.msgs.of("handoff")
    assert (msg.data.reason, msg.data.summary) == ("asks for a person", "wants a refund")
    assert kit.tts.texts == ["Connecting you now."]
    assert len(kit.llm.requests) == 1


async def test_bad_tool_arguments_go_back_to_the_model_and_the_call_goes_on() -> None:
    bad = ToolCall(id="b1", name="update_todo", arguments="{not json")
    llm = FakeLLM(scripts=[[bad], ["Let me try again."]])
    kit = make_kit(llm=llm, todo=TODO)
    async with running(kit):
        kit.pipeline.push_text(USER, "I am Ada")
        final = await kit.agent_final()
    assert final.text == "Let me try again."
    result = json.loads(llm.requests[1].messages[-1].content)
    assert result["ok"] is False and "JSON" in result["error"]


async def test_scripted_intake_walks_the_todo_list_to_the_end_of_the_call() -> None:
    from agents.providers.scripted_intake import ScriptedIntakeLLM

    todo = [TodoItem(id="name", description="your full name", required=True),
            TodoItem(id="phone", description="a phone number", required=True),
            TodoItem(id="color", description="favourite colour")]
    kit = make_kit(llm=ScriptedIntakeLLM(), todo=todo)  # type: ignore[arg-type]
    async with running(kit):
        for n, said in enumerate(["hello", "Ada Lovelace", "555 0100"], start=1):
            kit.pipeline.push_text(USER, said)
            await kit.agent_final(n)
        assert kit.task is not None
        assert await asyncio.wait_for(kit.task, 5) == "call_ended"
    board = kit.tools.board
    assert board.notes == {"name": "Ada Lovelace", "phone": "555-0100"}  # the value, normalised
    assert [i.status for i in board.items] == ["completed", "completed", "pending"]
    finals = [f.text for f in kit.agent_finals()]
    assert "name" in finals[0].lower() and "phone" in finals[1].lower()
    assert "Ada Lovelace" in finals[2]
    assert kit.msgs.of("todo_list")[-1].data.items[1].status == "completed"
