"""The agent's side of failover: what a conversation checkpoints, and how it goes on from one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fakes import FakeLLM
from pipeline_kit import AGENT, USER, make_kit, running, wait_until

from agents.messages import TodoItem
from agents.providers.base import ToolCall
from agents.record import JobRecorder
from agents.resume import ConversationCheckpoint, Resumption, parse_resume

TODO = [TodoItem(id="name", description="Caller name", required=True),
        TodoItem(id="city", description="Caller city")]


def complete_name() -> ToolCall:
    return ToolCall(id="c1", name="update_todo",
                    arguments=json.dumps({"id": "name", "status": "completed", "note": "Ada"}))


async def first_leg() -> list[dict[str, Any]]:
    saved: list[dict[str, Any]] = []
    llm = FakeLLM(scripts=[["Noted. ", complete_name()], ["Thanks, Ada. Which city?"]])
    kit = make_kit(llm=llm, todo=TODO, on_checkpoint=saved.append)
    async with running(kit):
        kit.pipeline.push_text(USER, "I am Ada")
        await kit.agent_final()
        await wait_until(lambda: len(saved) >= 3)
    return saved


def roles(state: dict[str, Any]) -> list[str]:
    return [m["role"] for m in state["history"]]


async def test_a_conversation_checkpoints_the_callers_words_each_tool_round_and_turn() -> None:
    saved = await first_leg()
    json.dumps(saved)  # stored as JSON by the service
    heard, after_tools, after_turn = saved[0], saved[1], saved[-1]
    assert roles(heard) == ["user"] and heard["transcript"][0]["text"] == "I am Ada"
    assert roles(after_tools) == ["user", "assistant", "tool"]
    assert after_tools["todo_items"][0]["status"] == "completed"
    assert after_tools["todo_notes"] == {"name": "Ada"}
    assert roles(after_turn) == ["user", "assistant", "tool", "assistant"]
    assert after_turn["history"][0] == {"role": "user", "content": "I am Ada", "name": USER}
    assert after_turn["history"][1]["tool_calls"][0]["name"] == "update_todo"
    assert [r["role"] for r in after_turn["transcript"]] == ["user", "agent"]


async def test_the_next_leg_goes_on_from_the_checkpoint_with_its_recovery_line() -> None:
    state = (await first_leg())[-1]
    llm = FakeLLM(scripts=[["Paris, lovely."]])
    kit = make_kit(llm=llm, todo=TODO, resume=ConversationCheckpoint.model_validate(state),
                   recovery_line="Sorry, I'm back.")
    async with running(kit):
        assert (await kit.agent_final()).text == "Sorry, I'm back."  # not the greeting
        first_list = kit.msgs.of("todo_list")[0].data.items
        assert [(i.id, i.status) for i in first_list] == [("name", "completed"),
                                                          ("city", "pending")]
        kit.pipeline.push_text(USER, "Paris")
        await kit.agent_final(2)
    sent = llm.requests[0].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[1].content == "I am Ada" and sent[-1].content == "Paris"
    assert "Sorry, I'm back." not in [m.content for m in sent]  # said, not a model turn
    assert '"note": "Ada"' in sent[0].content  # the todo board with its notes
    record = kit.pipeline.record()
    assert [r["role"] for r in record["transcript"]] == ["user", "agent", "agent", "user", "agent"]


def test_a_broken_checkpoint_resumes_empty_and_says_why() -> None:
    problems: list[str] = []
    resumed = parse_resume({"v": 1, "conversation": {"history": "not a list"}}, problems=problems)
    assert resumed == Resumption() and problems[0].startswith("checkpoint ignored")
    assert parse_resume(None, problems=problems) is None
    problems.clear()
    assert parse_resume({"v": 99}, problems=problems) == Resumption()
    assert "version 99" in problems[0]


def test_the_recorder_goes_on_from_the_earlier_legs_transcript() -> None:
    earlier = JobRecorder(job_id="J", room="r", job_type="JT_ROOM", agent_identity=AGENT)
    earlier.user_text(USER, "hello")
    saved = json.loads(json.dumps(earlier.checkpoint()))
    later = JobRecorder(job_id="J", room="r", job_type="JT_ROOM", agent_identity=AGENT)
    later.resume(Resumption.model_validate({"record": saved}).record)
    later.user_text(USER, "again")
    record = later.finish(end_reason="participant_left")
    assert [e["text"] for e in record["transcript"]] == ["hello", "again"]


async def test_words_the_lost_leg_had_not_answered_are_answered_after_the_recovery_line(
) -> None:
    saved = await first_leg()
    for state, expected in ((saved[0], "Got it, Ada."), (saved[1], "Thanks, Ada. Which city?")):
        llm = FakeLLM(scripts=[[expected]])
        kit = make_kit(llm=llm, todo=TODO, resume=ConversationCheckpoint.model_validate(state),
                       recovery_line="Sorry, I'm back.")
        async with running(kit):
            assert (await kit.agent_final()).text == "Sorry, I'm back."
            assert (await kit.agent_final(2)).text == expected  # nobody had to repeat
        sent = [m.role for m in llm.requests[0].messages]
        assert sent == ["system", *roles(state)]  # on from the caller's words or the tools


async def test_an_answered_conversation_just_says_the_recovery_line() -> None:
    state = (await first_leg())[-1]
    llm = FakeLLM(scripts=[["unexpected"]])
    kit = make_kit(llm=llm, todo=TODO, resume=ConversationCheckpoint.model_validate(state),
                   recovery_line="Sorry, I'm back.")
    async with running(kit):
        await kit.agent_final()
        await kit.status("listening")
        await asyncio.sleep(0.3)  # nothing more comes
    assert llm.requests == []
