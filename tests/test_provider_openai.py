"""The OpenAI-compatible providers against the scriptable loopback server in openai_server.py."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import AsyncIterator

import numpy as np
import pytest
from openai_server import OpenAIServer, finish, running_server, text_delta, tool_delta, usage

from agents.providers.base import (
    CallPolicy,
    ChatMessage,
    ChatRequest,
    ImagePart,
    LLMEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
)
from agents.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
)
from agents.providers.openai_llm import OpenAILLM, ToolCallAssembler
from agents.providers.openai_stt import OpenAISTT, iso639_1
from agents.providers.openai_tts import OpenAITTS, PCMReframer

FAST = CallPolicy(timeout=2.0, chunk_timeout=2.0, attempts=3, backoff=0.0)
SHORT = CallPolicy(timeout=0.3, chunk_timeout=0.3, attempts=1, backoff=0.0)
ONE_SHOT = CallPolicy(timeout=2.0, chunk_timeout=2.0, attempts=1, backoff=0.0)



@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    async with running_server() as server:
        yield server


HELLO = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
TODO_TOOL = ToolSpec(
    name="update_todo",
    description="Update the todo list",
    parameters={"type": "object", "properties": {"id": {"type": "string"}}},
)


def llm(server: OpenAIServer, policy: CallPolicy = FAST, **kw: object) -> OpenAILLM:
    return OpenAILLM(
        name="oai-llm", api_key="sk-test", base_url=server.base_url, policy=policy, **kw  # type: ignore[arg-type]
    )


def stt(server: OpenAIServer, policy: CallPolicy = FAST) -> OpenAISTT:
    return OpenAISTT(
        name="oai-stt", api_key="sk-test", base_url=server.base_url, language="en-US", policy=policy
    )


def tts(server: OpenAIServer, policy: CallPolicy = FAST) -> OpenAITTS:
    return OpenAITTS(name="oai-tts", api_key="sk-test", base_url=server.base_url, policy=policy)


async def collect(events: AsyncIterator[LLMEvent]) -> list[LLMEvent]:
    return [e async for e in events]


def speech(seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)


# --- chat -------------------------------------------------------------------------------------


async def test_chat_streams_text_deltas_and_usage(openai_server: OpenAIServer) -> None:
    openai_server.chat_chunks = [
        text_delta("Hel", role=True), text_delta("lo, "), text_delta("world."), finish(),
        usage(11, 3),
    ]
    provider = llm(openai_server, temperature=0.2)
    events = await collect(provider.chat(ChatRequest(messages=HELLO, max_tokens=50)))
    await provider.aclose()

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo, ", "world."]
    assert [e for e in events if isinstance(e, Usage)] == [Usage(11, 3)]
    sent = openai_server.requests_to("/v1/chat/completions")[0].json
    assert sent is not None
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 50
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}
    ]
    assert openai_server.requests[0].headers["Authorization"] == "Bearer sk-test"


async def test_chat_assembles_tool_call_argument_deltas(openai_server: OpenAIServer) -> None:
    openai_server.chat_chunks = [
        text_delta("One moment.", role=True),
        tool_delta(0, call_id="call_a", name="update_todo", arguments=""),
        tool_delta(0, arguments='{"id": '),
        tool_delta(1, call_id="call_b", name="end_call", arguments='{"rea'),
        tool_delta(0, arguments='"name", "status"'),
        tool_delta(1, arguments='son": "done"}'),
        tool_delta(0, arguments=': "completed"}'),
        finish("tool_calls"),
        usage(20, 9),
    ]
    provider = llm(openai_server)
    events = await collect(provider.chat(ChatRequest(messages=HELLO, tools=[TODO_TOOL])))
    await provider.aclose()

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [
        ToolCall(id="call_a", name="update_todo",
                 arguments='{"id": "name", "status": "completed"}'),
        ToolCall(id="call_b", name="end_call", arguments='{"reason": "done"}'),
    ]
    assert all(json.loads(c.arguments) for c in calls)
    # text first, then the calls (only once complete), then usage
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["TextDelta", "ToolCallEvent", "ToolCallEvent", "Usage"]
    sent = openai_server.requests[0].json
    assert sent is not None
    assert sent["tools"] == [{
        "type": "function",
        "function": {"name": "update_todo", "description": "Update the todo list",
                     "parameters": TODO_TOOL.parameters},
    }]


async def test_chat_sends_assistant_tool_calls_and_tool_results(
    openai_server: OpenAIServer,
) -> None:
    history = [
        *HELLO,
        ChatMessage(role="assistant", tool_calls=(
            ToolCall(id="call_1", name="update_todo", arguments='{"id": "x"}'),)),
        ChatMessage(role="tool", tool_call_id="call_1", content='{"ok": true}'),
    ]
    provider = llm(openai_server)
    await collect(provider.chat(ChatRequest(messages=history)))
    await provider.aclose()
    sent = openai_server.requests[0].json
    assert sent is not None
    assert sent["messages"][2:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "update_todo", "arguments": '{"id": "x"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true}'},
    ]


async def test_vision_model_sends_images_as_jpeg_data_urls(openai_server: OpenAIServer) -> None:
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg-bytes\xff\xd9"
    message = ChatMessage(
        role="user", content="What do you see?",
        images=(ImagePart(jpeg=jpeg, width=64, height=48),),
    )
    provider = llm(openai_server, vision=True)
    assert provider.supports_vision
    await collect(provider.chat(ChatRequest(messages=[message])))
    await provider.aclose()
    sent = openai_server.requests[0].json
    assert sent is not None
    parts = sent["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What do you see?"}
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == jpeg


async def test_images_to_a_text_only_model_are_a_clear_error(openai_server: OpenAIServer) -> None:
    message = ChatMessage(role="user", content="Look",
                          images=(ImagePart(jpeg=b"\xff\xd8", width=1, height=1),))
    provider = llm(openai_server)
    assert not provider.supports_vision
    with pytest.raises(ProviderError, match="vision") as info:
        await collect(provider.chat(ChatRequest(messages=[message])))
    assert not info.value.retryable
    assert openai_server.requests == []
    await provider.aclose()


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_chat_retries_retryable_statuses_then_succeeds(
    openai_server: OpenAIServer, status: int
) -> None:
    openai_server.fail_next("status", status=status, times=2)
    provider = llm(openai_server)
    events = await collect(provider.chat(ChatRequest(messages=HELLO)))
    await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there."
    assert len(openai_server.requests) == 3


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (401, False)])
async def test_chat_status_errors_map_to_status_error(
    openai_server: OpenAIServer, status: int, retryable: bool
) -> None:
    openai_server.fail_next("status", status=status, times=5)
    provider = llm(openai_server)
    with pytest.raises(ProviderStatusError) as info:
        await collect(provider.chat(ChatRequest(messages=HELLO)))
    await provider.aclose()
    assert info.value.status_code == status
    assert info.value.retryable is retryable
    assert "scripted failure" in str(info.value)
    # retried up to the policy's attempts when retryable, exactly once when not
    assert len(openai_server.requests) == (FAST.attempts if retryable else 1)


async def test_chat_hang_raises_provider_timeout(openai_server: OpenAIServer) -> None:
    openai_server.fail_next("hang")
    provider = llm(openai_server, policy=SHORT)
    with pytest.raises(ProviderTimeout) as info:
        await collect(provider.chat(ChatRequest(messages=HELLO)))
    await provider.aclose()
    assert info.value.retryable


async def test_chat_hang_mid_stream_raises_timeout_after_partial_output(
    openai_server: OpenAIServer,
) -> None:
    openai_server.fail_next("hang_after_first")
    provider = llm(openai_server, policy=SHORT)
    seen: list[LLMEvent] = []
    with pytest.raises(ProviderTimeout, match="next chunk"):
        async for event in provider.chat(ChatRequest(messages=HELLO)):
            seen.append(event)
    await provider.aclose()
    assert seen == [TextDelta("Hello")]
    assert len(openai_server.requests) == 1  # never retried once output has started


async def test_chat_stream_cut_midway_is_a_connection_error(openai_server: OpenAIServer) -> None:
    openai_server.fail_next("cut")
    provider = llm(openai_server)
    seen: list[LLMEvent] = []
    with pytest.raises(ProviderConnectionError) as info:
        async for event in provider.chat(ChatRequest(messages=HELLO)):
            seen.append(event)
    await provider.aclose()
    assert info.value.retryable
    assert seen == [TextDelta("Hello"), TextDelta(" there.")]
    assert len(openai_server.requests) == 1


async def test_chat_malformed_json_is_a_non_retryable_error(openai_server: OpenAIServer) -> None:
    openai_server.fail_next("malformed")
    provider = llm(openai_server)
    with pytest.raises(ProviderError, match="malformed") as info:
        await collect(provider.chat(ChatRequest(messages=HELLO)))
    await provider.aclose()
    assert not info.value.retryable
    assert type(info.value) is ProviderError


async def test_chat_error_event_mid_stream_is_a_retryable_provider_error(
    openai_server: OpenAIServer,
) -> None:
    openai_server.fail_next("error_event")
    provider = llm(openai_server)
    seen: list[LLMEvent] = []
    with pytest.raises(ProviderError, match="overloaded") as info:
        async for event in provider.chat(ChatRequest(messages=HELLO)):
            seen.append(event)
    await provider.aclose()
    assert info.value.retryable  # the server said server_error
    assert seen == [TextDelta("Hello")]
    assert len(openai_server.requests) == 1  # output had started: not retried


async def test_unreachable_server_is_a_retryable_connection_error() -> None:
    provider = OpenAILLM(name="x", api_key="k", base_url="http://127.0.0.1:9/v1", policy=ONE_SHOT)
    with pytest.raises(ProviderConnectionError) as info:
        await collect(provider.chat(ChatRequest(messages=HELLO)))
    assert info.value.retryable
    await provider.aclose()
    await provider.aclose()  # idempotent


def test_tool_call_assembler_handles_whole_calls_missing_ids_and_reused_indexes() -> None:
    class Fn:
        def __init__(self, name: str | None, arguments: str | None) -> None:
            self.name, self.arguments = name, arguments

    class Frag:
        def __init__(self, index: int, id: str | None, name: str | None, args: str | None):
            self.index, self.id, self.function = index, id, Fn(name, args)

    asm = ToolCallAssembler()
    asm.add(Frag(0, None, "end_call", ""))  # no id, no arguments
    asm.add(Frag(1, "c1", "a", '{"x": 1}'))  # whole call in one fragment
    asm.add(Frag(1, "c2", "b", "{}"))  # same index, new id: a new call
    calls = asm.finish(provider="p")
    assert [(c.name, c.arguments) for c in calls] == [
        ("a", '{"x": 1}'), ("end_call", "{}"), ("b", "{}")
    ]
    assert calls[1].id.startswith("call_") and calls[0].id == "c1" and calls[2].id == "c2"
    assert asm.finish(provider="p") == []
    asm.add(Frag(0, "c3", None, "{}"))
    with pytest.raises(ProviderError, match="without a name"):
        asm.finish(provider="p")


# --- transcription ----------------------------------------------------------------------------


async def test_transcription_sends_a_16k_wav_and_returns_the_text(
    openai_server: OpenAIServer,
) -> None:
    openai_server.transcript = "  book a table for two  "
    pcm = speech(0.5)
    provider = stt(openai_server)
    result = await provider.transcribe(pcm)
    await provider.aclose()
    assert result.text == "book a table for two"
    assert result.language == "en"
    recorded = openai_server.requests_to("/v1/audio/transcriptions")[0]
    assert recorded.form["model"] == "gpt-4o-mini-transcribe"
    assert recorded.form["language"] == "en"
    with wave.open(io.BytesIO(recorded.files["file"])) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert np.array_equal(frames, pcm)


@pytest.mark.parametrize(
    ("kind", "status", "error", "retryable", "requests"),
    [
        ("status", 500, ProviderStatusError, True, 3),
        ("status", 429, ProviderStatusError, True, 3),
        ("status", 401, ProviderStatusError, False, 1),
        ("cut", 0, ProviderConnectionError, True, 3),
        ("malformed", 0, ProviderError, False, 1),
    ],
)
async def test_transcription_errors_map_and_retry(
    openai_server: OpenAIServer,
    kind: str, status: int, error: type[ProviderError], retryable: bool, requests: int,
) -> None:
    openai_server.fail_next(kind, status=status, times=5)  # type: ignore[arg-type]
    provider = stt(openai_server)
    with pytest.raises(error) as info:
        await provider.transcribe(speech(0.1))
    await provider.aclose()
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert len(openai_server.requests) == requests


async def test_transcription_hang_raises_provider_timeout(openai_server: OpenAIServer) -> None:
    openai_server.fail_next("hang")
    provider = stt(openai_server, policy=SHORT)
    with pytest.raises(ProviderTimeout):
        await provider.transcribe(speech(0.1))
    await provider.aclose()


async def test_transcription_rejects_bad_audio_without_calling_the_server(
    openai_server: OpenAIServer,
) -> None:
    provider = stt(openai_server)
    with pytest.raises(ProviderError, match="no audio"):
        await provider.transcribe(np.zeros(0, dtype=np.int16))
    with pytest.raises(ProviderError, match="int16"):
        await provider.transcribe(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
    await provider.aclose()
    assert openai_server.requests == []


def test_language_hint_becomes_iso_639_1() -> None:
    assert iso639_1("en-US") == "en"
    assert iso639_1("pt_BR") == "pt"
    assert iso639_1("DE") == "de"
    assert iso639_1(None) is None and iso639_1("") is None


# --- speech -----------------------------------------------------------------------------------


async def test_speech_streams_pcm_split_on_sample_boundaries(openai_server: OpenAIServer) -> None:
    samples = (np.arange(24000 // 2) % 3000 - 1500).astype("<i2")  # 0.5 s, every value known
    openai_server.speech_pcm = samples.tobytes()
    openai_server.speech_chunk_sizes = [1001, 7, 2048, 333]  # odd sizes split samples
    openai_server.chunk_delay = 0.002  # separate reads, so the client sees the odd splits
    provider = tts(openai_server)
    chunks = [c async for c in provider.synthesize("Hello there.", voice="nova")]
    await provider.aclose()

    assert provider.sample_rate == 24000
    assert len(chunks) > 1
    assert all(c.dtype == np.int16 for c in chunks)
    assert np.array_equal(np.concatenate(chunks), samples)
    sent = openai_server.requests[0].json
    assert sent == {"model": "gpt-4o-mini-tts", "input": "Hello there.", "voice": "nova",
                    "response_format": "pcm"}


def test_pcm_reframer_carries_the_odd_byte() -> None:
    data = np.array([1, -2, 300, -32768, 32767], dtype="<i2").tobytes()
    reframer = PCMReframer()
    out = [reframer.feed(data[i : i + 3]) for i in range(0, len(data), 3)]
    joined = np.concatenate([o for o in out if o is not None])
    assert joined.tolist() == [1, -2, 300, -32768, 32767]
    assert reframer.leftover == 0
    assert reframer.feed(b"\x01") is None and reframer.leftover == 1


@pytest.mark.parametrize(
    ("kind", "status", "error", "retryable", "requests"),
    [
        ("status", 500, ProviderStatusError, True, 3),
        ("status", 429, ProviderStatusError, True, 3),
        ("status", 401, ProviderStatusError, False, 1),
    ],
)
async def test_speech_status_errors_map_and_retry(
    openai_server: OpenAIServer,
    kind: str, status: int, error: type[ProviderError], retryable: bool, requests: int,
) -> None:
    openai_server.speech_pcm = b"\x00\x01" * 100
    openai_server.fail_next(kind, status=status, times=5)  # type: ignore[arg-type]
    provider = tts(openai_server)
    with pytest.raises(error) as info:
        _ = [c async for c in provider.synthesize("Hi")]
    await provider.aclose()
    assert info.value.retryable is retryable
    assert len(openai_server.requests) == requests


async def test_speech_cut_midway_is_a_connection_error(openai_server: OpenAIServer) -> None:
    openai_server.speech_pcm = b"\x00\x01" * 24000
    openai_server.speech_chunk_sizes = [4000]
    openai_server.chunk_delay = 0.01
    openai_server.fail_next("cut")
    provider = tts(openai_server)
    got = 0
    with pytest.raises(ProviderConnectionError):
        async for chunk in provider.synthesize("Hi"):
            got += chunk.size
    await provider.aclose()
    assert 0 < got < 24000


async def test_speech_hang_raises_provider_timeout(openai_server: OpenAIServer) -> None:
    openai_server.speech_pcm = b"\x00\x01" * 100
    openai_server.fail_next("hang")
    provider = tts(openai_server, policy=SHORT)
    with pytest.raises(ProviderTimeout):
        _ = [c async for c in provider.synthesize("Hi")]
    await provider.aclose()


async def test_empty_text_makes_no_request(openai_server: OpenAIServer) -> None:
    provider = tts(openai_server)
    assert [c async for c in provider.synthesize("   ")] == []
    await provider.aclose()
    assert openai_server.requests == []


async def test_empty_api_key_is_refused_for_openai_but_fine_for_a_local_server(
    openai_server: OpenAIServer,
) -> None:
    with pytest.raises(ProviderUnavailable, match="api_key"):
        OpenAITTS(name="t", api_key="")
    provider = OpenAISTT(name="local", api_key="", base_url=openai_server.base_url)
    assert (await provider.transcribe(speech(0.1))).text == "hello world"
    await provider.aclose()
    assert openai_server.requests[0].headers["Authorization"] == "Bearer no-key"
