"""Failover on the real stack: two ``external-agent serve`` replicas on a real ``redis-server``,
a real ``livekit-server`` and a real caller. The replica running a call is killed (SIGKILL), cut
off from Redis, or drained; the caller hears the agent again, the todo list goes on where it
stopped, and the job's record shows both legs. Figures (kill to voice again) are printed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from livekit_env import LiveKitServer, RealCaller, Received, ServiceProcess, render_speech
from mcp_servers import stdio_command
from openai_server import finish, running_server, text_delta, tool_delta
from redis_env import RedisServer, TcpProxy
from stage import ADMIN, GREETING, real_service, signed_offer

pytestmark = [pytest.mark.livekit, pytest.mark.embedded, pytest.mark.timeout(300)]

ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}
BASE_PORT = 18091
PROXY_PORT = 16380
LEASE = 2.0
RECOVERY = "Sorry, I lost the line for a moment. I'm back."

Replicas = Callable[..., Coroutine[Any, Any, list[ServiceProcess]]]


@pytest.fixture
async def replicas(live_server: LiveKitServer, redis_server: RedisServer,
                   tmp_path: Path) -> AsyncIterator[Replicas]:
    """``await replicas(urls)``: one failover replica per Redis URL, stopped at teardown."""
    started: list[ServiceProcess] = []

    async def make(urls: list[str], *, native: bool = False,
                   **config: Any) -> list[ServiceProcess]:
        new = []
        for url in urls:
            i = len(started)
            service = real_service(
                live_server, tmp_path / f"replica-{i}", port=BASE_PORT + i, max_jobs=2,
                registry="redis", redis_url=url,
                failover={"enabled": True, "lease_seconds": LEASE, "scan_interval": 0.25,
                          "replica": f"r{i}"},
                worker={"enabled": native}, **config,
            )
            started.append(service)
            new.append(service)
        # Together: warming the models is mostly one core's work per process.
        await asyncio.gather(*(service.start() for service in new))
        return new

    try:
        yield make
    finally:
        await asyncio.gather(*(s.stop() for s in started))


async def job_on(service: ServiceProcess, job_id: str) -> dict[str, Any] | None:
    with_timeout = await service.client.get(f"/jobs/{job_id}", headers=ADMIN_HEADERS)
    if with_timeout.status_code == 404:
        return None
    assert with_timeout.status_code == 200, with_timeout.text
    job: dict[str, Any] = with_timeout.json()
    return job


async def wait_job(service: ServiceProcess, job_id: str, states: tuple[str, ...], *,
                   within: float) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            with_timeout: dict[str, Any] | None = None
            try:
                with_timeout = await job_on(service, job_id)
            except httpx.HTTPError:
                pass
            if with_timeout is not None and with_timeout["state"] in states:
                return with_timeout
            await asyncio.sleep(0.2)


def agent_final(agent: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: bool(d["is_final"]) and d["participant_id"] == agent


def status_of(item: str) -> Callable[[dict[str, Any]], str]:
    return lambda d: next(i["status"] for i in d["items"] if i["id"] == item)


async def start_call(server: LiveKitServer, service: ServiceProcess, *, job_id: str,
                     room: str, who: str, record_name: bool = True) -> tuple[RealCaller, str]:
    """A caller in ``room``, the job offered to ``service``, the greeting heard and the name
    asked for; with ``record_name``, also given and recorded (so there is a conversation
    to go on from)."""
    caller = RealCaller(server=server, room=room, identity=who)
    await caller.join()
    await caller.start_microphone()
    raw, headers = signed_offer(server, job_id=job_id, room=room)
    answer = await service.client.post("/livekit/agent", content=raw, headers=headers)
    assert answer.status_code == 200 and answer.json()["accepted"], answer.text
    agent = f"ai-agent-{job_id}"
    greeting = await caller.wait_message("transcript_chunk", agent_final(agent), within=40)
    assert greeting.data["text"] == GREETING
    await listening(caller, after=greeting)
    # The embedded responder first asks for the name (in progress), then records it.
    await turn(caller, agent, "My name is Alice Johnson.", "name", "in_progress")
    if record_name:
        await turn(caller, agent, "My name is Alice Johnson.", "name", "completed")
    return caller, agent


async def turn(caller: RealCaller, agent: str, words: str, item: str, status: str) -> None:
    """Say ``words``; wait for ``item`` to reach ``status`` and for the agent's answer to end."""
    seen = len(caller.received)
    await caller.say(await render_speech(words))
    await caller.wait_message("todo_list", lambda d: status_of(item)(d) == status,
                              after=seen, within=40)
    answer = await caller.wait_message("transcript_chunk", agent_final(agent), after=seen,
                                       within=40)
    await listening(caller, after=answer)


async def listening(caller: RealCaller, *, after: Received) -> None:
    """The agent has finished speaking (its status back to listening) after message ``after``."""
    await caller.wait_message("agent_status", lambda d: d["status"] == "listening",
                              after=caller.received.index(after), within=30)


def todo_now(caller: RealCaller) -> list[tuple[str, str]]:
    return [(i["id"], i["status"]) for i in caller.messages("todo_list")[-1].data["items"]]


async def resumed(caller: RealCaller, agent: str, *, after: int, lost_at: float,
                  todo: list[tuple[str, str]]) -> tuple[float, Received]:
    """The caller's view of the takeover: the agent back (``agent_status`` resumed), the todo
    list as it was, the recovery line heard; returns seconds from ``lost_at`` to the new leg's
    voice (the first agent sound after its ``resumed`` status: the old leg may still be heard
    until it stops), and the recovery line's transcript message."""
    back = await caller.wait_message("agent_status", lambda d: d.get("message") == "resumed",
                                     after=after, within=30, sender=agent)
    again = await caller.wait_message("todo_list", after=after, within=10, sender=agent)
    assert [(i["id"], i["status"]) for i in again.data["items"]] == todo  # goes on, not afresh
    assert todo[0] == ("name", "completed")
    line = await caller.wait_message("transcript_chunk", agent_final(agent), after=after,
                                     within=30)
    assert line.data["text"] == RECOVERY
    heard = await caller.audio.wait_voiced_after(back.at, within=30)
    await listening(caller, after=line)
    return heard - lost_at, line


def check_record(view: dict[str, Any], replicas: list[str]) -> None:
    assert [leg["replica"] for leg in view["legs"]] == replicas, view["legs"]
    assert view["legs"][-1]["token"] > view["legs"][0]["token"]
    assert view["legs"][0]["lost_at"] is not None and view["legs"][-1]["gap_s"] > 0
    texts = [t["text"] for t in view["record"]["transcript"]]
    assert GREETING in texts and RECOVERY in texts  # both legs' transcript, in one record
    assert any("my name is" in t.lower() for t in texts)
    todo = {i["id"]: i["status"] for i in view["record"]["todo_list"]}
    assert todo["name"] == "completed" and todo["reason"] == "completed"


async def test_a_call_goes_on_after_its_replica_is_killed_and_after_a_drain(
    live_server: LiveKitServer, redis_server: RedisServer, replicas: Replicas,
) -> None:
    services = await replicas([redis_server.url] * 3, drain_timeout=0.5)
    caller, agent = await start_call(live_server, services[0], job_id="AJ_kill1",
                                     room="fo-kill", who="bob", record_name=False)
    loop = asyncio.get_running_loop()
    # 1. SIGKILL mid-turn, while the agent speaks its next question: nothing is released
    seen = len(caller.received)
    said = await caller.say(await render_speech("My name is Bob Stone."))
    await caller.wait_message("todo_list", lambda d: status_of("name")(d) == "completed",
                              after=seen, within=40)
    await caller.audio.wait_voiced_after(said + 0.2, within=20)
    seen, todo = len(caller.received), todo_now(caller)
    services[0].signal(signal.SIGKILL)
    killed, killed_wall = loop.time(), time.time()
    gap, line = await resumed(caller, agent, after=seen, lost_at=killed, todo=todo)
    owner = await owner_of(services[1:], "AJ_kill1")
    claimed = (await job_on(owner, "AJ_kill1") or {})["legs"][-1]["started_at"] - killed_wall
    print(f"\nfailover: SIGKILL to the agent's voice again {gap:.2f} s (claimed after "
          f"{claimed:.2f} s; lease {LEASE:g} s)")
    assert gap < LEASE + 10
    # the question in flight died with its turn; the new leg asks it by itself (the
    # checkpoint ends with the tool round's results), and the answer is recorded
    question = await caller.wait_message("transcript_chunk", agent_final(agent),
                                         after=caller.received.index(line) + 1, within=30)
    assert question.data["text"] != RECOVERY
    await listening(caller, after=question)
    await turn(caller, agent, "I am calling about a broken heater.", "reason", "completed")
    # 2. the new owner is drained (SIGTERM): it hands the call to the last replica
    seen, todo = len(caller.received), todo_now(caller)
    owner.signal(signal.SIGTERM)
    drained = loop.time()
    gap, _ = await resumed(caller, agent, after=seen, lost_at=drained, todo=todo)
    print(f"failover: SIGTERM (drain 0.5 s) to the agent's voice again {gap:.2f} s")
    assert await owner.wait_exit(30) == 0
    last = next(s for s in services[1:] if s is not owner)
    await caller.leave()
    view = await wait_job(last, "AJ_kill1", ("completed",), within=40)
    names = {id(s): f"r{i}" for i, s in enumerate(services)}
    check_record(view, ["r0", names[id(owner)], names[id(last)]])


async def owner_of(services: list[ServiceProcess], job_id: str) -> ServiceProcess:
    for service in services:
        job = await job_on(service, job_id)
        if job is not None and job["state"] == "running":
            return service
    pytest.fail(f"no replica runs {job_id}")


async def test_a_replica_cut_off_from_redis_stops_and_another_takes_the_call(
    live_server: LiveKitServer, redis_server: RedisServer, replicas: Replicas,
) -> None:
    proxy = TcpProxy(target_port=redis_server.port, port=PROXY_PORT)
    await proxy.start()
    try:
        r0, r1 = await replicas([proxy.url, redis_server.url])
        caller, agent = await start_call(live_server, r0, job_id="AJ_cut1", room="fo-cut",
                                         who="bob")
        seen, todo = len(caller.received), todo_now(caller)
        await proxy.cut()
        cut = asyncio.get_running_loop().time()
        gap, _ = await resumed(caller, agent, after=seen, lost_at=cut, todo=todo)
        print(f"\nfailover: cut off from Redis to the agent's voice again {gap:.2f} s")
        stopped = await wait_job(r0, "AJ_cut1", ("cancelled",), within=10)
        assert stopped["reason"].startswith("failover: registry unreachable"), stopped
        taken = await wait_job(r1, "AJ_cut1", ("running",), within=10)
        # the owner stopped before the other replica's leg began: never two agents at once
        assert stopped["ended_at"] < taken["legs"][-1]["started_at"]
        await turn(caller, agent, "I am calling about a broken heater.", "reason", "completed")
        await caller.leave()
        check_record(await wait_job(r1, "AJ_cut1", ("completed",), within=40), ["r0", "r1"])
    finally:
        await proxy.aclose()


async def test_a_native_dispatch_job_is_taken_over_once_and_never_dispatched_twice(
    live_server: LiveKitServer, redis_server: RedisServer, replicas: Replicas,
) -> None:
    """The stock server's own job dies with its worker; the room must still hold one agent."""
    from livekit import api

    r0, r1 = await replicas([redis_server.url] * 2, native=True)
    caller = RealCaller(server=live_server, room="fo-native", identity="dave")
    await caller.join()
    lk = live_server.api()
    try:
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="external-agent", room="fo-native"))
        greeting = await caller.wait_message(
            "transcript_chunk", lambda d: d["is_final"] and d["text"] == GREETING, within=40)
        agent = greeting.data["participant_id"]
        job_id = agent.removeprefix("ai-agent-")
        owner = r0 if await job_on(r0, job_id) is not None else r1
        other = r1 if owner is r0 else r0
        seen = len(caller.received)
        owner.signal(signal.SIGKILL)
        await caller.wait_message("agent_status", lambda d: d.get("message") == "resumed",
                                  after=seen, within=30, sender=agent)
        taken = await wait_job(other, job_id, ("running",), within=10)
        assert taken["source"] == "dispatch" and len(taken["legs"]) == 2
        # for a while after, the room holds that one agent and no re-dispatched second one
        loop = asyncio.get_running_loop()
        until = loop.time() + 8
        while loop.time() < until:
            rooms = await lk.room.list_participants(
                api.ListParticipantsRequest(room="fo-native"))
            agents = {p.identity for p in rooms.participants if p.identity != "dave"}
            assert agents <= {agent}, agents
            await asyncio.sleep(0.5)
        jobs = [j for j in (await other.client.get("/jobs", headers=ADMIN_HEADERS)).json()["jobs"]
                if j["room"] == "fo-native"]
        assert [j["job_id"] for j in jobs] == [job_id], jobs
    finally:
        await lk.aclose()
        await caller.leave()


ORDER_ANSWER = "Your order left the warehouse this morning."


def order_model(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A fake model: asked about an order it calls the slow order tool, and reads its result
    back as the answer."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return [text_delta(ORDER_ANSWER, role=True), finish()]
    if "order" in str(last.get("content", "")):
        return [tool_delta(0, call_id="call_order", name="orders__slow",
                           arguments=json.dumps({"seconds": 4})), finish("tool_calls")]
    return [text_delta("I can look up orders.", role=True), finish()]


async def test_a_call_killed_during_a_tool_round_is_answered_by_the_next_leg(
    live_server: LiveKitServer, redis_server: RedisServer, replicas: Replicas,
) -> None:
    async with running_server() as model:
        model.chat_responder = order_model
        command, args = stdio_command()
        agent = {
            "pipeline": {
                "audio": {"pipeline": ["stt", "llm", "tts", "return"], "llm": "model"},
                "providers": {"model": {"type": "openai", "kind": "llm", "model": "fake",
                                        "base_url": model.base_url, "api_key": "sk-test"}},
            },
            "mcp": {"servers": {"orders": {"transport": "stdio", "command": command,
                                           "args": args, "tools": ["slow"]}}},
        }
        r0, r1 = await replicas([redis_server.url] * 2, agent=agent)
        caller = RealCaller(server=live_server, room="fo-tool", identity="erin")
        await caller.join()
        try:
            raw, headers = signed_offer(live_server, job_id="AJ_tool1", room="fo-tool")
            assert (await r0.client.post("/livekit/agent", content=raw,
                                         headers=headers)).status_code == 200
            name = "ai-agent-AJ_tool1"
            greeting = await caller.wait_message("transcript_chunk", agent_final(name),
                                                 within=40)
            await listening(caller, after=greeting)
            seen = len(caller.received)
            await caller.send_text("Where is my order?")
            async with asyncio.timeout(20):  # the model asked for the tool: it runs for 4 s
                while not model.requests_to("/v1/chat/completions"):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            r0.signal(signal.SIGKILL)  # during the tool round
            await caller.wait_message("agent_status", lambda d: d.get("message") == "resumed",
                                      after=seen, within=30, sender=name)
            # nobody repeats anything: the new leg asks the model again from the caller's
            # words, the tool runs again (to completion this time), and the answer comes
            answer = await caller.wait_message(
                "transcript_chunk", lambda d: agent_final(name)(d) and d["text"] != RECOVERY,
                after=seen, within=40)
            assert answer.data["text"] == ORDER_ANSWER
            lasts = [r.json["messages"][-1]["role"] for r in
                     model.requests_to("/v1/chat/completions") if r.json is not None]
            assert lasts == ["user", "user", "tool"], lasts  # one lost round, one whole one
        finally:
            await caller.leave()
        view = await wait_job(r1, "AJ_tool1", ("completed",), within=40)
        assert [leg["replica"] for leg in view["legs"]] == ["r0", "r1"]
        typed = [t for t in view["record"]["transcript"] if t["participant_id"] == "erin"]
        assert [t["text"] for t in typed] == ["Where is my order?"]
        assert view["record"]["conversation"]["mcp_calls"][-1]["ok"] is True
