"""Approved knowledge and MCP tools change the agent's answers, through the voice pipeline as
the service builds it (AgentConversations from the configuration): speech in, the real OpenAI
provider against a fake model on loopback that answers from its context, a real knowledge
collection and a real MCP server (stdio, the SDK's own server class)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

from fakes import FakeAudioOutput, FakeMessageOutput, FakeSTT, FakeTTS, FakeVAD, silence, speech
from knowledge_kit import write_collection
from mcp_servers import stdio_command
from openai_server import OpenAIServer, finish, running_server, text_delta, tool_delta
from pipeline_kit import AGENT, TURN, USER, job_spec

from agents.config import AgentConfig
from agents.conversation import AgentConversations
from agents.participant import ConversationContext
from agents.pipeline.registry import ProviderRegistry

QUESTIONS = ["What is your return policy?", "Where is my order A100?"]
DONT_KNOW = "I do not know that, sorry."


def reading_model(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A fake model that reads its context: it answers from an approved passage when one is in
    the system message, calls the order tool when it is offered and asked about an order, and
    reads a tool's result back. Otherwise it does not know."""
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        return [text_delta(f"Our order system says: {json.loads(last['content'])['result']}.",
                           role=True), finish()]
    question = last["content"]
    tools = {t["function"]["name"] for t in body.get("tools", [])}
    order = re.search(r"order ([A-Z]\d+)", question)
    if order and "orders__order_status" in tools:
        args = json.dumps({"order_id": order.group(1)})
        return [tool_delta(0, call_id="call_1", name="orders__order_status", arguments=args),
                finish("tool_calls")]
    passage = re.search(r"\n\[1\] \([^)]*\)\n(.+?)(?:\n\n\[|\Z)", messages[0]["content"],
                        re.DOTALL)
    if passage and not order:
        text = " ".join(passage.group(1).split())
        return [text_delta(f"Here is what I know: {text}", role=True), finish()]
    return [text_delta(DONT_KNOW, role=True), finish()]


def agent_config(server: OpenAIServer, tmp: Path, *, extras: bool) -> AgentConfig:
    raw: dict[str, Any] = {
        "persona": {"instructions": "You are the store's assistant."},
        "pipeline": {
            "audio": {"pipeline": ["stt", "llm", "tts", "return"], "llm": "model"},
            "turn": TURN,
            "providers": {"model": {"type": "openai", "kind": "llm", "model": "fake",
                                    "base_url": server.base_url, "api_key": "sk-test"}},
        },
    }
    if extras:
        command, args = stdio_command()
        raw["knowledge"] = {
            "collections": {"store-policy": {"path": str(write_collection(tmp / "docs"))}},
            "index_dir": str(tmp / "index"), "watch_interval_s": None,
        }
        raw["mcp"] = {"servers": {"orders": {"transport": "stdio", "command": command,
                                             "args": args, "tools": ["order_status"]}}}
    return AgentConfig.model_validate(raw)


async def converse(
    config: AgentConfig, embedder: Any, overrides: dict[str, Any] | None = None
) -> tuple[list[str], FakeMessageOutput, dict[str, Any], AgentConversations]:
    prebuilt: dict[str, Any] = {"silero": FakeVAD(), "piper": FakeTTS(rate=16000),
                                "moonshine": FakeSTT(responses=list(QUESTIONS))}
    conversations = AgentConversations(
        config, registry=ProviderRegistry(config=config.pipeline, prebuilt=prebuilt))
    if conversations._knowledge is not None:  # share the session's loaded model
        conversations._knowledge._embedder = embedder
    await conversations.prewarm()
    msgs = FakeMessageOutput()
    conversation = conversations(ConversationContext(
        spec=job_spec(), config=config, persona=config.persona, overrides=overrides or {},
        audio=FakeAudioOutput(sample_rate=16000), messages=msgs, agent_identity=AGENT,
    ))
    task = asyncio.create_task(conversation.run(), name="test-conversation")
    answers: list[str] = []
    try:
        for n in (1, 2):
            await msgs.wait_for(lambda m: m.type == "agent_status"
                                and m.data.status == "listening")
            for frame in speech(400) + silence(300):
                conversation.push_audio(USER, frame)
                await asyncio.sleep(0)
            final = await msgs.wait_for(
                lambda m, n=n: m.type == "transcript_chunk" and m.data.participant_id == AGENT
                and m.data.is_final and len([x for x in msgs.transcripts(AGENT)
                                             if x.is_final]) >= n, within=15)
            answers.append(final.data.text if n == 1 else
                           [x for x in msgs.transcripts(AGENT) if x.is_final][-1].text)
            await msgs.wait_for(lambda m, n=n: len(msgs.of("agent_metrics")) >= n, within=5)
        record = conversation.record()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conversations.aclose()
    return answers, msgs, record, conversations


async def test_a_collection_and_an_mcp_server_change_the_agents_answers(
    tmp_path: Path, knowledge_embedder: Any
) -> None:
    async with running_server() as server:
        server.chat_responder = reading_model
        plain, _, plain_record, _ = await converse(
            agent_config(server, tmp_path, extras=False), knowledge_embedder)
        assert plain == [DONT_KNOW, DONT_KNOW]
        assert "mcp_calls" not in plain_record

        server.requests.clear()
        answers, msgs, record, _ = await converse(
            agent_config(server, tmp_path, extras=True), knowledge_embedder)
    assert "45 days of delivery" in answers[0]
    assert answers[1] == ("Our order system says: Order A100: shipped on 2 November, "
                          "arriving Friday.")
    # what the model was given: the passage with its source, the MCP tool next to built-ins
    first = server.requests_to("/v1/chat/completions")[0].json
    assert first is not None
    assert "(store-policy: returns.md)" in first["messages"][0]["content"]
    names = {t["function"]["name"] for t in first["tools"]}
    assert {"update_todo", "end_call", "orders__order_status"} <= names
    # agent_metrics and the job record say which passages were used and how long it took
    used = msgs.of("agent_metrics")[0].data.knowledge
    assert used is not None and used.retrieval_ms > 0
    assert used.passages[0].source == "returns.md"
    turn = record["turns"][0]
    assert turn["knowledge"]["passages"][0]["collection"] == "store-policy"
    assert record["mcp_calls"] == [{"call_id": "call_1", "tool": "orders__order_status",
                                    "ok": True}]
    # the service closed its MCP connection and knowledge watcher: no task left behind
    assert not [t for t in asyncio.all_tasks()
                if t.get_name().startswith(("mcp-", "knowledge-")) and not t.done()]


async def test_metadata_narrows_the_knowledge_scope_of_a_job(
    tmp_path: Path, knowledge_embedder: Any
) -> None:
    async with running_server() as server:
        server.chat_responder = reading_model
        answers, msgs, record, _ = await converse(
            agent_config(server, tmp_path, extras=True), knowledge_embedder,
            overrides={"knowledge": ["not-configured"]})
    assert answers[0] == DONT_KNOW  # no collection in scope: nothing retrieved
    assert msgs.of("agent_metrics")[0].data.knowledge is None
    assert "knowledge" not in record["turns"][0]
