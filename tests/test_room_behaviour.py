"""What a caller meets in the room, run against the in-memory room and a real LiveKit server
alike (the ``stage`` fixture): the same test bodies, so the twin cannot drift from LiveKit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from livekit_env import Caller, render_speech
from stage import GREETING, Stage, stage

from agents.providers.decode_guard import trailing_loop

__all__ = ["stage"]

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(120)]


def _final_agent_text(data: dict[str, Any], agent: str) -> bool:
    return bool(data["is_final"]) and data["participant_id"] == agent


async def _say_after_the_greeting(caller: Caller, sentence: str) -> tuple[int, float, str]:
    """Once the greeting has played out, ``caller`` says ``sentence``: the count of messages
    before it, when the speech ended, and the caller's final transcript of it."""
    await asyncio.sleep(0.5)  # the greeting's audio plays out
    seen = len(caller.received)
    ended = await caller.say(await render_speech(sentence))
    final = await caller.wait_message(
        "transcript_chunk", lambda d: d["is_final"] and d["participant_id"] == caller.identity,
        after=seen)
    return seen, ended, str(final.data["text"])


def _todo_status(data: dict[str, Any], item: str) -> str:
    return next(i["status"] for i in data["items"] if i["id"] == item)


async def test_a_caller_is_greeted_answered_by_voice_and_the_job_completes_with_its_record(
    stage: Stage,
) -> None:
    caller = await stage.caller("room-voice", "alice")
    r = await stage.dispatch(job_id="AJ_voice1", room="room-voice")
    assert r.status_code == 200 and r.json()["accepted"] is True, r.text
    agent = "ai-agent-AJ_voice1"

    status = await caller.wait_message("agent_status")
    assert status.data["status"] in ("listening", "speaking")
    todo = await caller.wait_message("todo_list")
    assert [i["id"] for i in todo.data["items"]] == ["name", "reason", "phone"]
    greeting = await caller.wait_message(
        "transcript_chunk", lambda d: _final_agent_text(d, agent))
    assert greeting.data["text"] == GREETING
    # every message names its topic as its type
    assert all(m.topic == m.type for m in caller.received)
    # a frontend that filters by sender still gets the agent's status and todo list, even
    # when the first copies arrived before it knew the agent (defect d)
    await caller.wait_message("agent_status", sender=agent)
    await caller.wait_message("todo_list", sender=agent)
    seen, ended, heard = await _say_after_the_greeting(caller, "My name is Alice Johnson.")
    assert "alice" in heard.lower()
    await caller.wait_message("agent_status", lambda d: d["status"] == "thinking", after=seen)
    changed = await caller.wait_message(
        "todo_list", lambda d: _todo_status(d, "name") != "pending", after=seen)
    assert changed.data["items"][0]["status"] in ("in_progress", "completed")
    answer = await caller.wait_message(
        "transcript_chunk", lambda d: _final_agent_text(d, agent), after=seen)
    assert answer.data["text"]
    await caller.audio.wait_voiced_after(ended)
    metrics = await caller.wait_message("agent_metrics", after=seen)
    assert metrics.data["kind"] == "voice"
    # no runaway decode ("The low my my my my my") reaches the caller, interim or final
    for chunk in caller.messages("transcript_chunk"):
        assert trailing_loop(chunk.data["text"].lower().split()) is None, chunk.data

    await caller.leave()
    view = await stage.wait_job("AJ_voice1")
    assert view["state"] == "completed", view
    assert view["source"] == "webhook"
    record = view["record"]
    speakers = [t["participant_id"] for t in record["transcript"]]
    assert "alice" in speakers and agent in speakers
    assert any(i["id"] == "name" and i["status"] != "pending" for i in record["todo_list"])


@pytest.mark.stage_config(agent={"pipeline": {"turn": {"detector": "smart-turn"}}})
async def test_with_smart_turn_a_finished_sentence_is_ended_by_the_model_and_answered(
    stage: Stage,
) -> None:
    # Smart Turn scores this sentence 0.82-0.96 at both its looks in every rendering tried
    # (Piper varies from one to the next), far from the 0.5 threshold: the model, not
    # max_silence_ms, ends the turn, through Opus and the SFU as in the in-memory room.
    caller = await stage.caller("room-smart", "carol")
    await stage.dispatch(job_id="AJ_smart1", room="room-smart")
    agent = "ai-agent-AJ_smart1"
    await caller.wait_message("transcript_chunk", lambda d: _final_agent_text(d, agent))
    seen, ended, heard = await _say_after_the_greeting(
        caller, "I would like to book an appointment.")
    assert "appointment" in heard.lower()
    answer = await caller.wait_message(
        "transcript_chunk", lambda d: _final_agent_text(d, agent), after=seen)
    assert answer.data["text"]
    await caller.audio.wait_voiced_after(ended)
    await caller.leave()
    view = await stage.wait_job("AJ_smart1")
    assert view["state"] == "completed", view
    ends = view["record"]["conversation"]["end_of_turn"]
    assert set(ends) <= {"look_0", "look_1"} and sum(ends.values()) == 1, ends


async def test_a_typed_message_is_answered_and_recorded_once(stage: Stage) -> None:
    caller = await stage.caller("room-text", "bob", microphone=False)
    await stage.dispatch(job_id="AJ_text1", room="room-text")
    agent = "ai-agent-AJ_text1"
    await caller.wait_message("transcript_chunk", lambda d: _final_agent_text(d, agent))
    seen = len(caller.received)
    await caller.send_text("My name is Bob Stone.")
    await caller.send_raw(b"{not json")  # logged and ignored; the job goes on
    answer = await caller.wait_message(
        "transcript_chunk", lambda d: _final_agent_text(d, agent), after=seen)
    assert answer.data["text"]
    await caller.leave()
    view = await stage.wait_job("AJ_text1")
    assert view["state"] == "completed", view
    typed = [t for t in view["record"]["transcript"] if t["participant_id"] == "bob"]
    assert [t["text"] for t in typed] == ["My name is Bob Stone."]


async def test_a_caller_who_joins_after_the_agent_gets_status_todo_and_the_greeting(
    stage: Stage,
) -> None:
    r = await stage.dispatch(job_id="AJ_late1", room="room-late")
    assert r.json()["accepted"] is True
    agent = "ai-agent-AJ_late1"
    await stage.wait_job("AJ_late1", ("running",))
    await asyncio.sleep(1.5)  # the agent is alone in the room for a while
    caller = await stage.caller("room-late", "carol")
    status = await caller.wait_message("agent_status")
    todo = await caller.wait_message("todo_list")
    assert [i["id"] for i in todo.data["items"]] == ["name", "reason", "phone"]
    # the frontend filters by sender: the first messages already come from the agent
    assert status.sender == agent and todo.sender == agent
    greeting = await caller.wait_message("transcript_chunk", lambda d: _final_agent_text(d, agent))
    assert greeting.data["text"] == GREETING
    await caller.audio.wait_voiced_after(0)
    await caller.leave()
    assert (await stage.wait_job("AJ_late1"))["state"] == "completed"


LONG_GREETING = (
    "Hello and welcome to the intake line. I will ask you for your name, for what the call is "
    "about, and for a number we can call you back on. Please take your time with each answer, "
    "and tell me if you would like me to repeat a question."
)


async def test_speaking_over_the_agent_stops_its_voice(stage: Stage) -> None:
    speech = await render_speech("Sorry to interrupt, my name is Dave Miller and I need help.")
    caller = await stage.caller("room-barge", "dave")
    await stage.dispatch(job_id="AJ_barge1", room="room-barge",
                         metadata=json.dumps({"greeting": LONG_GREETING}))
    agent = "ai-agent-AJ_barge1"
    await caller.wait_message("agent_status", lambda d: d["status"] == "speaking")
    first = await caller.audio.wait_voiced_after(0)
    started = asyncio.get_running_loop().time()
    seen = len(caller.received)
    speaking = asyncio.create_task(caller.say(speech))
    try:
        cut = await caller.wait_message(
            "transcript_chunk",
            lambda d: d["participant_id"] == agent and d.get("interrupted") is True, after=seen)
        played = cut.data["text"].split()
        assert played != LONG_GREETING.split() and LONG_GREETING.split()[: len(played)] == played
        stopped = await caller.audio.wait_silent_after(started, silence_s=0.5)
    finally:
        await speaking
    # the long greeting (about 12 s of speech) was cut while the caller spoke, not played out
    assert stopped - first < 8.0, stopped - first
    await caller.leave()
    assert (await stage.wait_job("AJ_barge1"))["state"] == "completed"
