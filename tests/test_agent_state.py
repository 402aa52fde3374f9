"""The ``lk.agent.state`` attribute's sender: in order, latest value only, a refusal stops it,
a failure or a slow answer is counted and the next change tries again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

import agents.agent_state as agent_state
from agents.agent_state import AGENT_STATE, AgentStateAttribute
from agents.record import JobRecorder
from agents.transport.base import AttributesRefused, TransportError


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: list[BaseException] = []
        self.calls = 0

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(attributes[AGENT_STATE])


def make(transport: FakeTransport) -> tuple[AgentStateAttribute, JobRecorder]:
    recorder = JobRecorder(job_id="AJ_1", room="r", job_type="JT_ROOM", agent_identity="a")
    return AgentStateAttribute(transport, recorder=recorder,  # type: ignore[arg-type]
                               log=structlog.get_logger("test")), recorder


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_changes_go_out_in_order_and_only_the_latest_waiting_one() -> None:
    t = FakeTransport()
    state, _ = make(t)
    t.gate.clear()
    state.set("initializing")
    await settle()
    for value in ("listening", "thinking", "speaking"):  # while the first is in flight
        state.set(value)
    t.gate.set()
    await settle()
    assert t.sent == ["initializing", "speaking"] and state.sent == "speaking"
    state.set("speaking")  # unchanged: nothing to send
    await settle()
    assert t.calls == 2
    await state.aclose()


async def test_a_refusal_is_a_warning_once_and_ends_the_attempts() -> None:
    t = FakeTransport()
    t.fail = [AttributesRefused("set attributes failed: NotAllowed")]
    state, recorder = make(t)
    state.set("initializing")
    await settle()
    state.set("listening")
    state.set("thinking")
    await settle()
    assert t.calls == 1 and t.sent == []
    assert recorder.counters["agent_state_failed"] == 1
    assert recorder.warnings == [f"the {AGENT_STATE} attribute is not set: "
                                 "set attributes failed: NotAllowed"]
    await state.aclose()


async def test_a_failed_or_slow_update_is_counted_and_the_next_change_tries_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_state, "SET_TIMEOUT", 0.05)
    t = FakeTransport()
    t.fail = [TransportError("set attributes failed: timeout", retryable=True)]
    state, recorder = make(t)
    state.set("initializing")
    await settle()
    assert t.sent == [] and recorder.counters["agent_state_failed"] == 1
    t.gate.clear()  # the server does not answer
    state.set("listening")
    await asyncio.sleep(0.15)
    assert recorder.counters["agent_state_failed"] == 2 and state.sent is None
    t.gate.set()
    state.set("thinking")
    await settle()
    assert t.sent == ["thinking"] and recorder.warnings == []
    await state.aclose()


async def test_close_stops_an_update_in_flight_and_nothing_is_sent_after_it() -> None:
    t = FakeTransport()
    t.gate.clear()
    state, _ = make(t)
    state.set("initializing")
    await settle()
    await state.aclose()
    await state.aclose()
    t.gate.set()
    state.set("listening")  # a status published while the job ends
    await settle()
    assert t.sent == [] and t.calls == 1


async def test_a_room_already_left_ends_the_attempts_without_a_warning() -> None:
    t = FakeTransport()
    t.fail = [TransportError("not connected to the room", retryable=False)]
    state, recorder = make(t)
    state.set("speaking")
    await settle()
    state.set("listening")
    await settle()
    assert t.calls == 1 and recorder.warnings == []
    assert "agent_state_failed" not in recorder.counters
    await state.aclose()


async def test_the_memory_room_refuses_like_the_server_without_the_grant() -> None:
    from livekit import api
    from room_kit import API_KEY, API_SECRET, AudioListener

    from agents.transport.memory import MemoryHub, MemoryTransport

    token = (api.AccessToken(API_KEY, API_SECRET).with_identity("agent-x")
             .with_grants(api.VideoGrants(room_join=True, room="r")).to_jwt())
    transport = MemoryTransport(hub=MemoryHub())
    listener: Any = AudioListener()
    await transport.connect(url="local://test", token=token, listener=listener,
                            wants_audio=lambda _i: True)
    with pytest.raises(AttributesRefused, match="NotAllowed") as refused:
        await transport.set_attributes({AGENT_STATE: "listening"})
    assert not refused.value.retryable
    await transport.aclose()
