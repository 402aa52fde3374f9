"""A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, or Ollama,
vLLM, a llama.cpp server... through ``base_url``), streamed, with tools.

Text arrives as :class:`TextDelta`; tool-call arguments, which the API streams in fragments, are
assembled here and each call is yielded once, complete, as a :class:`ToolCallEvent` (when the
model finishes, in the order it made them); token counts come as :class:`Usage` when the server
sends them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from agents.providers._openai_common import OpenAIClientOwner, translated
from agents.providers.base import (
    LLM,
    CallPolicy,
    ChatMessage,
    ChatRequest,
    LLMEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
)
from agents.providers.errors import ProviderError


def image_data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def to_openai_message(msg: ChatMessage, *, vision: bool, provider: str) -> dict[str, Any]:
    """Our message in the Chat Completions wire format."""
    out: dict[str, Any] = {"role": msg.role}
    if msg.images and not vision:
        raise ProviderError(
            "message has images but this model is not configured for vision (vision: true)",
            provider=provider,
        )
    if msg.role == "tool":
        if not msg.tool_call_id:
            raise ProviderError("tool message without tool_call_id", provider=provider)
        out["tool_call_id"] = msg.tool_call_id
        out["content"] = msg.content
        return out
    if msg.images:
        parts: list[dict[str, Any]] = []
        if msg.content:
            parts.append({"type": "text", "text": msg.content})
        for image in msg.images:
            parts.append({"type": "image_url", "image_url": {"url": image_data_url(image.jpeg)}})
        out["content"] = parts
    elif msg.role == "assistant" and msg.tool_calls and not msg.content:
        out["content"] = None
    else:
        out["content"] = msg.content
    if msg.role == "assistant" and msg.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in msg.tool_calls
        ]
    if msg.name:
        out["name"] = msg.name
    return out


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


@dataclass(slots=True)
class _PartialCall:
    id: str
    name: str
    arguments: str


class ToolCallAssembler:
    """Joins streamed tool-call fragments (keyed by ``index``) into complete calls.

    Tolerates what OpenAI-compatible servers do differently: the whole call in one fragment,
    a missing ``id`` (one is made up), or a new call reusing an index (a new ``id`` there starts
    a new call).
    """

    def __init__(self) -> None:
        self._open: dict[int, _PartialCall] = {}
        self._done: list[_PartialCall] = []

    def add(self, fragment: Any) -> None:
        index = int(getattr(fragment, "index", None) or 0)
        call_id = getattr(fragment, "id", None)
        function = getattr(fragment, "function", None)
        name = getattr(function, "name", None) if function is not None else None
        args = getattr(function, "arguments", None) if function is not None else None
        current = self._open.get(index)
        if current is not None and call_id and current.id and call_id != current.id:
            self._done.append(current)
            current = None
        if current is None:
            current = _PartialCall(id=call_id or "", name="", arguments="")
            self._open[index] = current
        if call_id and not current.id:
            current.id = call_id
        if name and name != current.name:
            # Normally sent once; a few servers repeat it in every fragment.
            current.name = name if not current.name else current.name + name
        if args:
            current.arguments += args

    def finish(self, *, provider: str) -> list[ToolCall]:
        """Every call so far, complete, oldest first; the assembler starts over."""
        pending = self._done + [self._open[i] for i in sorted(self._open)]
        self._open.clear()
        self._done = []
        calls: list[ToolCall] = []
        for part in pending:
            if not part.name:
                raise ProviderError(
                    "malformed response: tool call without a name", provider=provider
                )
            calls.append(
                ToolCall(
                    id=part.id or f"call_{uuid.uuid4().hex[:24]}",
                    name=part.name,
                    arguments=part.arguments or "{}",
                )
            )
        return calls


class OpenAILLM(OpenAIClientOwner, LLM):
    """Streamed chat completions with tools (and images when ``vision`` is on)."""

    def __init__(
        self,
        *,
        name: str,
        model: str = "gpt-4o-mini",
        api_key: str,
        base_url: str | None = None,
        temperature: float | None = None,
        vision: bool = False,
        policy: CallPolicy | None = None,
    ) -> None:
        super().__init__(name=name, policy=policy)
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.supports_vision = vision
        self._open_client(api_key=api_key, base_url=base_url)

    def build_request(self, request: ChatRequest) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request``."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [
                to_openai_message(m, vision=self.supports_vision, provider=self.name)
                for m in request.messages
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            params["tools"] = [to_openai_tool(t) for t in request.tools]
        temperature = request.temperature if request.temperature is not None else self.temperature
        if temperature is not None:
            params["temperature"] = temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        return params

    async def _chat_impl(self, request: ChatRequest) -> AsyncIterator[LLMEvent]:
        self._check_open("LLM")
        if not request.messages:
            raise ProviderError("chat request without messages", provider=self.name)
        params = self.build_request(request)
        calls = ToolCallAssembler()
        async with translated(provider=self.name, what="chat"):
            stream = await self._client.chat.completions.create(**params)
        try:
            while True:
                async with translated(provider=self.name, what="chat"):
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        break
                usage = getattr(chunk, "usage", None)
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None:
                        if delta.content:
                            yield TextDelta(delta.content)
                        for fragment in delta.tool_calls or ():
                            calls.add(fragment)
                    if choice.finish_reason is not None:
                        for call in calls.finish(provider=self.name):
                            yield ToolCallEvent(call)
                if usage is not None:
                    yield Usage(
                        prompt_tokens=usage.prompt_tokens or 0,
                        completion_tokens=usage.completion_tokens or 0,
                    )
            # Servers that end the stream without a finish_reason still get their calls out.
            for call in calls.finish(provider=self.name):
                yield ToolCallEvent(call)
        finally:
            await stream.close()
