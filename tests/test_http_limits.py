"""The service under uvicorn on loopback, probed with raw sockets (issue 16, items 1 and 2):
header size capped, header and body time limits, a connection cap that a flood of stalled
sockets cannot use to lock out a prompt client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from service_proc import running_service
from test_service_e2e import service_env

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
MAX_CONNECTIONS = 40
LIMITS = {
    "EXTERNAL_AGENT_HTTP__MAX_HEADER_BYTES": "8192",
    "EXTERNAL_AGENT_HTTP__HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    "EXTERNAL_AGENT_HTTP__BODY_TIMEOUT": str(BODY_TIMEOUT),
    "EXTERNAL_AGENT_HTTP__MAX_CONNECTIONS": str(MAX_CONNECTIONS),
}


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port

    def sockets(self) -> int:
        """Sockets the service process holds open."""
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        count = 0
        for fd in os.listdir(fd_dir):
            try:
                count += os.readlink(fd_dir / fd).startswith("socket:")
            except OSError:
                pass
        return count

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)

    async def health(self) -> int:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{self.port}/health")).status_code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("http") / "service.log"
    with running_service(service_env(port, **LIMITS), port, log) as proc:
        yield Server(proc, port)


async def read_all(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything until the server closes; fails if it keeps the connection past ``within``."""
    async with asyncio.timeout(within):
        return await reader.read(-1)


async def test_a_1mb_header_is_refused_with_431_before_it_is_all_sent(server: Server) -> None:
    reader, writer = await server.connect()
    request = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
    )
    sent = 0
    answer = b""
    async with asyncio.timeout(10):
        while sent < len(request) and not answer:
            writer.write(request[sent : sent + 16384])
            sent += 16384
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(65536), 0.05)
            except TimeoutError:
                pass
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["accepted"] is False
    assert sent <= 64 * 1024


async def test_a_complete_header_block_over_the_cap_in_one_packet_is_refused(
    server: Server,
) -> None:
    reader, writer = await server.connect()
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(100))  # ~10 KiB
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    answer = await read_all(reader, 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_an_unfinished_header_is_closed_after_the_header_timeout(server: Server) -> None:
    reader, writer = await server.connect()
    started = time.monotonic()
    writer.write(b"POST /livekit/agent HTTP/1.1\r\nHost: x\r\nX-Slow: aa")
    answer = await read_all(reader, HEADER_TIMEOUT + 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9


async def test_an_idle_connection_is_closed_after_the_header_timeout(server: Server) -> None:
    reader, writer = await server.connect()
    answer = await read_all(reader, HEADER_TIMEOUT + 5)
    writer.close()
    assert answer == b""


async def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await read_all(reader, HEADER_TIMEOUT + 6)  # uvicorn's keep-alive or ours
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_body_sent_at_one_byte_a_second_is_cut_off(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(
        b"POST /livekit/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    started = time.monotonic()
    closed_after: float | None = None
    async with asyncio.timeout(BODY_TIMEOUT + 6):
        for _ in range(100):
            try:
                writer.write(b"{")
                await writer.drain()
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
            try:
                data = await asyncio.wait_for(reader.read(1), 1.0)
            except TimeoutError:
                continue
            if data == b"":
                closed_after = time.monotonic() - started
                break
    writer.close()
    assert closed_after is not None, "the slow body held the connection"
    assert BODY_TIMEOUT * 0.9 <= closed_after <= BODY_TIMEOUT + 3


async def test_a_flood_of_stalled_connections_holds_few_sockets_and_health_answers(
    server: Server,
) -> None:
    flood: list[asyncio.StreamWriter] = []
    try:
        for _ in range(MAX_CONNECTIONS * 5):
            _, writer = await server.connect()
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Stall: a")
            flood.append(writer)
        await asyncio.sleep(0.3)
        assert await server.health() == 200
        # The listening socket and a handful of others, plus the capped connections.
        assert server.sockets() <= MAX_CONNECTIONS + 8
        # Stalled connections are closed after the header timeout, whatever the cap.
        await asyncio.sleep(HEADER_TIMEOUT + 1.0)
        assert server.sockets() <= 8
        assert await server.health() == 200
    finally:
        for writer in flood:
            writer.close()
