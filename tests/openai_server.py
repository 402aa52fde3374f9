"""A scriptable OpenAI-compatible server on 127.0.0.1 for provider tests.

Endpoints (under ``/v1``):
- ``POST /chat/completions``: streams ``server.chat_chunks`` as Server-Sent Events, one event
  per scripted chunk, then ``data: [DONE]``;
- ``POST /audio/transcriptions``: answers ``{"text": server.transcript}``;
- ``POST /audio/speech``: streams ``server.speech_pcm`` (``response_format=pcm`` only) in pieces of
  ``server.speech_chunk_sizes`` bytes (odd sizes split samples on purpose).

Faults, queued with :meth:`OpenAIServer.fail_next` and consumed one per request, any endpoint:
``status`` (an error status with an OpenAI-style JSON body), ``hang`` (no answer until the test
ends), ``hang_after_first`` (one chunk, then nothing), ``cut`` (the connection drops part-way),
``malformed`` (a body that is not valid JSON / not valid SSE JSON), ``error_event`` (chat only:
an ``{"error": ...}`` event after the first chunk, as vLLM and OpenAI send on overload).

``server.chat_responder`` (optional) answers each chat request from its body instead.

Every request is recorded in ``server.requests`` (path, headers, JSON body or form fields/files).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

FaultKind = Literal["status", "hang", "hang_after_first", "cut", "malformed", "error_event"]


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


# --- chat chunk builders: the "delta"/"usage" part of one streamed chunk ----------------------


def text_delta(text: str, *, role: bool = False) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": text}
    if role:
        delta["role"] = "assistant"
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def tool_delta(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": arguments}
    call: dict[str, Any] = {"index": index, "function": fn}
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    if name is not None:
        fn["name"] = name
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}


def finish(reason: str = "stop") -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


class OpenAIServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.chat_chunks: list[dict[str, Any]] = [
            text_delta("Hello", role=True),
            text_delta(" there."),
            finish(),
            usage(5, 2),
        ]
        self.transcript = "hello world"
        self.speech_pcm = b""
        self.speech_chunk_sizes: list[int] = [4801]
        self.chunk_delay = 0.0
        """Pause between streamed chunks (seconds)."""
        self.chat_responder: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
        """When set, builds each chat answer's chunks from the request body (a fake model that
        reads its context) instead of replaying ``chat_chunks``."""
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, kind: FaultKind, *, status: int = 500, times: int = 1) -> None:
        for _ in range(times):
            self.faults.append(Fault(kind=kind, status=status))

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- plumbing ------------------------------------------------------------------------------

    def _fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    async def _hang(self) -> None:
        try:
            await asyncio.wait_for(self._release.wait(), timeout=60)
        except TimeoutError:
            pass

    @staticmethod
    def _status(fault: Fault) -> web.Response:
        kinds = {401: "invalid_request_error", 429: "rate_limit_error"}
        body = {
            "error": {
                "message": f"scripted failure {fault.status}",
                "type": kinds.get(fault.status, "server_error"),
                "code": None,
            }
        }
        return web.json_response(body, status=fault.status)

    @staticmethod
    def _drop(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    # --- endpoints -----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), json=body))
        fault = self._fault()
        if fault is not None and fault.kind == "status":
            return self._status(fault)
        if fault is not None and fault.kind == "hang":
            await self._hang()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        created = int(time.time())
        chunks = self.chat_responder(body) if self.chat_responder else self.chat_chunks
        for i, chunk in enumerate(chunks):
            if fault is not None and fault.kind == "malformed" and i == 1:
                await resp.write(b'data: {"id": "chatcmpl-x", "choices": [\n\n')
                break
            if fault is not None and fault.kind == "error_event" and i == 1:
                error = {"error": {"message": "overloaded", "type": "server_error"}}
                await resp.write(f"data: {json.dumps(error)}\n\n".encode())
                break
            if fault is not None and fault.kind == "cut" and i == 2:
                self._drop(request)
                return resp
            if fault is not None and fault.kind == "hang_after_first" and i == 1:
                await self._hang()
            envelope = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", "test"),
                **chunk,
            }
            await resp.write(f"data: {json.dumps(envelope)}\n\n".encode())
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] = {}
        files: dict[str, bytes] = {}
        reader = await request.multipart()
        async for part in reader:
            if part.name is None:
                continue
            data = await part.read()  # type: ignore[union-attr]
            if part.filename:  # type: ignore[union-attr]
                files[part.name] = bytes(data)
            else:
                form[part.name] = bytes(data).decode()
        self.requests.append(Recorded(request.path, dict(request.headers), form=form, files=files))
        fault = self._fault()
        if fault is not None:
            if fault.kind == "status":
                return self._status(fault)
            if fault.kind in ("hang", "hang_after_first"):
                await self._hang()
            if fault.kind == "cut":
                self._drop(request)
                return web.Response()
            if fault.kind == "malformed":
                return web.Response(text='{"text": "trunc', content_type="application/json")
        return web.json_response({"text": self.transcript})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), json=body))
        fault = self._fault()
        if fault is not None and fault.kind == "status":
            return self._status(fault)
        if fault is not None and fault.kind == "hang":
            await self._hang()
        if body.get("response_format") != "pcm":
            return self._status(Fault(kind="status", status=400))
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        pos, i = 0, 0
        while pos < len(self.speech_pcm):
            size = self.speech_chunk_sizes[i % len(self.speech_chunk_sizes)]
            if fault is not None and fault.kind == "cut" and i == 1:
                self._drop(request)
                return resp
            if fault is not None and fault.kind == "hang_after_first" and i == 1:
                await self._hang()
            await resp.write(self.speech_pcm[pos : pos + size])
            pos += size
            i += 1
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await resp.write_eof()
        return resp


@asynccontextmanager
async def running_server() -> AsyncIterator[OpenAIServer]:
    """A started server, stopped on the way out."""
    server = OpenAIServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    """The server as a fixture (import it into a test module, or wrap running_server)."""
    async with running_server() as server:
        yield server
