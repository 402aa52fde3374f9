"""MCP tools against real MCP servers (the SDK's own MCPServer) over stdio and Streamable HTTP
on loopback: allowlist, calls, errors and timeouts as tool results, reconnects, per-job
headers, credentials kept out of logs, and the fake OpenAI model calling the tools."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp_servers import HttpServer, http_server, stdio_command
from structlog.testing import capture_logs

from agents.mcp_tools import McpConfig, McpPool
from agents.providers.base import ToolCall


def stdio_config(**extra: Any) -> McpConfig:
    command, args = stdio_command()
    return McpConfig.model_validate({"servers": {"orders": {
        "transport": "stdio", "command": command, "args": args,
        "tools": ["order_status", "slow", "whoami"], **extra,
    }}})


def http_config(url: str, **extra: Any) -> McpConfig:
    return McpConfig.model_validate({"servers": {"orders": {
        "transport": "http", "url": url, "tools": ["order_status", "whoami"],
        "reconnect_backoff": 0.1, **extra,
    }}})


@pytest.fixture
async def stdio_pool() -> AsyncIterator[McpPool]:
    pool = McpPool(config=stdio_config(timeout=1.5))
    await pool.prewarm()
    try:
        yield pool
    finally:
        await pool.aclose()


def call(name: str, args: dict[str, Any], call_id: str = "c1") -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(args))


async def test_stdio_server_offers_only_allowlisted_tools_and_answers_calls(
    stdio_pool: McpPool,
) -> None:
    tools = stdio_pool.for_job(job_id="AJ_1")
    names = sorted(s.name for s in tools.specs())
    assert names == ["orders__order_status", "orders__slow", "orders__whoami"]
    spec = next(s for s in tools.specs() if s.name == "orders__order_status")
    assert "order id" in spec.description
    assert spec.parameters["properties"]["order_id"]["type"] == "string"
    ok = json.loads(await tools.call(call("orders__order_status", {"order_id": "a100"})))
    assert ok == {"ok": True, "result": "Order A100: shipped on 2 November, arriving Friday"}
    assert tools.handles("orders__order_status") and not tools.handles("update_todo")
    assert tools.calls == [{"call_id": "c1", "tool": "orders__order_status", "ok": True}]


async def test_tool_errors_bad_arguments_and_timeouts_come_back_as_results(
    stdio_pool: McpPool,
) -> None:
    tools = stdio_pool.for_job(job_id="AJ_1")
    failed = json.loads(await tools.call(call("orders__order_status", {"order_id": "Z9"})))
    assert failed["ok"] is False and "Z9" in failed["error"]
    bad = ToolCall(id="c2", name="orders__order_status", arguments="{not json")
    assert "not valid JSON" in json.loads(await tools.call(bad))["error"]
    hidden = json.loads(await tools.call(call("orders__secret_admin_tool", {})))
    assert hidden == {"ok": False, "error": "tool 'orders__secret_admin_tool' is not offered"}
    started = asyncio.get_running_loop().time()
    slow = json.loads(await tools.call(call("orders__slow", {"seconds": 30})))
    assert slow == {"ok": False, "error": "the orders server did not answer within 1.5 s"}
    assert asyncio.get_running_loop().time() - started < 5
    # the connection still serves after a timeout
    again = json.loads(await tools.call(call("orders__order_status", {"order_id": "B200"})))
    assert again["ok"] is True


async def test_http_server_restart_is_reconnected_without_failing_the_call() -> None:
    async with http_server() as server:
        pool = McpPool(config=http_config(server.url))
        await pool.prewarm()
        try:
            tools = pool.for_job(job_id="AJ_1")
            first = json.loads(await tools.call(call("orders__order_status", {"order_id": "A100"})))
            assert first["ok"] is True
            await server.restart()  # the old session is gone with the process
            with capture_logs() as logs:
                second = json.loads(await tools.call(
                    call("orders__order_status", {"order_id": "B200"}, call_id="c2")))
            assert second == {"ok": True, "result": "Order B200: waiting for stock"}
            events = [e["event"] for e in logs]
            assert "mcp_call_connection_lost" in events and "mcp_connected" in events
        finally:
            await pool.aclose()


async def test_a_server_that_is_down_answers_the_model_within_the_timeout() -> None:
    server = HttpServer(port=__import__("mcp_servers").free_port())
    pool = McpPool(config=http_config(server.url, timeout=1.0, connect_timeout=0.5))
    with capture_logs() as logs:
        await pool.prewarm()  # nothing listens: startup goes on, retried in the background
    assert "mcp_not_connected_at_start" in [e["event"] for e in logs]
    try:
        tools = pool.for_job(job_id="AJ_1")
        assert tools.specs() == []  # a server that is down offers no tools
        down = json.loads(await tools.call(call("orders__order_status", {"order_id": "A100"})))
        assert down == {"ok": False, "error": "the orders server is not reachable within 1 s"}
        await server.start()  # it comes up: the background reconnect finds it
        conn = pool._shared["orders"]
        assert await conn.wait_connected(10)
        up = json.loads(await tools.call(call("orders__order_status", {"order_id": "A100"})))
        assert up["ok"] is True
    finally:
        await pool.aclose()
        await server.stop()


async def test_job_headers_reach_the_server_per_job_and_credentials_stay_out_of_logs() -> None:
    async with http_server() as server:
        config = http_config(server.url, job_headers=["Authorization"],
                             headers={"X-Api-Key": "config-secret-123"})
        with capture_logs() as logs:
            pool = McpPool(config=config)
            await pool.prewarm()
            a = pool.for_job(job_id="AJ_a", headers={"orders": {
                "Authorization": "Bearer caller-a", "X-Forwarded-For": "1.2.3.4"}})
            b = pool.for_job(job_id="AJ_b",
                             headers={"orders": {"Authorization": "Bearer caller-b"}})
            await a.open()
            await b.open()
            try:
                who_a = json.loads(await a.call(call("orders__whoami", {})))
                who_b = json.loads(await b.call(call("orders__whoami", {})))
            finally:
                await a.aclose()
                await b.aclose()
                await pool.aclose()
        assert who_a == {"ok": True, "result": "Bearer caller-a"}
        assert who_b == {"ok": True, "result": "Bearer caller-b"}
        refused = [e for e in logs if e["event"] == "mcp_job_headers_refused"]
        assert refused and refused[0]["headers"] == ["X-Forwarded-For"]
        dump = repr(logs)
        for secret in ("config-secret-123", "caller-a", "caller-b"):
            assert secret not in dump
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mcp-")]


def test_server_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="needs a command"):
        McpConfig.model_validate({"servers": {"x": {"transport": "stdio", "tools": ["*"]}}})
    with pytest.raises(ValueError, match="http"):
        McpConfig.model_validate({"servers": {"x": {"transport": "http", "url": "ftp://h",
                                                    "tools": ["*"]}}})
    with pytest.raises(ValueError, match="server name"):
        McpConfig.model_validate({"servers": {"a__b": {"transport": "http",
                                                       "url": "http://h", "tools": ["*"]}}})
    with pytest.raises(ValueError):
        McpConfig.model_validate({"servers": {"x": {"transport": "http", "url": "http://h"}}})
    with pytest.raises(ValueError, match="needs Authorization in job_headers"):
        McpConfig.model_validate({"servers": {"x": {
            "transport": "http", "url": "http://h", "tools": ["*"],
            "token_refresh": {"url": "https://idp/token"}}}})


async def test_a_job_with_a_callers_token_gets_its_own_connection_for_its_conversation() -> None:
    from fakes import FakeAudioOutput, FakeLLM, FakeMessageOutput, FakeSTT, FakeTTS, FakeVAD
    from pipeline_kit import AGENT, USER, job_spec

    from agents.config import AgentConfig
    from agents.conversation import AgentConversations
    from agents.participant import ConversationContext
    from agents.pipeline.registry import ProviderRegistry
    from agents.tooling import ToolingConversation

    async with http_server() as server:
        config = AgentConfig.model_validate({"mcp": {"servers": {"orders": {
            "transport": "http", "url": server.url, "tools": ["whoami"],
            "job_headers": ["Authorization"]}}}})
        llm = FakeLLM(scripts=[[ToolCall(id="t1", name="orders__whoami", arguments="{}")],
                               ["You are signed in."]])
        registry = ProviderRegistry(config=config.pipeline, prebuilt={
            "silero": FakeVAD(), "moonshine": FakeSTT(), "scripted-intake": llm,
            "piper": FakeTTS(rate=16000)})
        conversations = AgentConversations(config, registry=registry)
        await conversations.prewarm()
        msgs = FakeMessageOutput()
        conversation = conversations(ConversationContext(
            spec=job_spec(), config=config, persona=config.persona,
            overrides={"mcp_headers": {"orders": {"Authorization": "Bearer caller-x"}}},
            audio=FakeAudioOutput(sample_rate=16000), messages=msgs, agent_identity=AGENT,
        ))
        assert isinstance(conversation, ToolingConversation)
        task = asyncio.create_task(conversation.run(), name="test-conversation")
        try:
            await msgs.wait_for(lambda m: m.type == "agent_status"
                                and m.data.status == "listening", within=10)
            conn = conversation._tools._own["orders"]
            assert await conn.wait_connected(10)
            conversation.push_text(USER, "Who am I?")
            await msgs.wait_for(lambda m: m.type == "transcript_chunk" and m.data.is_final
                                and m.data.participant_id == AGENT, within=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await conversations.aclose()
        tool_msg = llm.requests[1].messages[-1]
        assert tool_msg.role == "tool"
        assert json.loads(tool_msg.content) == {"ok": True, "result": "Bearer caller-x"}
        assert conversation.record()["mcp_calls"][0]["tool"] == "orders__whoami"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mcp-")]


async def test_an_expired_caller_token_is_refreshed_before_the_call() -> None:
    import time

    import jwt
    from aiohttp import web
    from mcp_servers import free_port

    from agents.overrides import parse_overrides

    key = "token-signing-key-for-the-test-0123456789"
    fresh = jwt.encode({"sub": "caller-x", "exp": int(time.time()) + 600}, key)
    expired = jwt.encode({"sub": "caller-x", "exp": int(time.time()) - 5}, key)
    grants: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post())
        grants.append({k: str(v) for k, v in form.items()})
        if form.get("refresh_token") != "refresh-1":
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response({"access_token": fresh, "token_type": "Bearer",
                                  "refresh_token": "refresh-2"})

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with http_server() as server:
            config = http_config(server.url, job_headers=["Authorization"], token_refresh={
                "url": f"http://127.0.0.1:{port}/token", "client_id": "agent",
                "client_secret": "client-secret-456"})
            overrides = parse_overrides(json.dumps({
                "mcp_headers": {"orders": {"Authorization": f"Bearer {expired}"}},
                "mcp_refresh": {"orders": "refresh-1"}}))
            with capture_logs() as logs:
                pool = McpPool(config=config)
                tools = pool.for_job(job_id="AJ_r", headers=overrides.mcp_headers,
                                     refresh=overrides.mcp_refresh)
                await tools.open()
                try:
                    who = json.loads(await tools.call(call("orders__whoami", {})))
                finally:
                    await tools.aclose()
                    await pool.aclose()
    finally:
        await runner.cleanup()
    assert who == {"ok": True, "result": f"Bearer {fresh}"}
    assert grants[0] == {"grant_type": "refresh_token", "refresh_token": "refresh-1",
                         "client_id": "agent", "client_secret": "client-secret-456"}
    assert len(grants) == 1  # the fresh token is kept for the calls and reconnects after
    assert "mcp_token_refreshed" in [e["event"] for e in logs]
    dump = repr(logs)
    for secret in (fresh, expired, "refresh-1", "refresh-2", "client-secret-456"):
        assert secret not in dump
