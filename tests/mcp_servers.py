"""Real MCP servers for tests, built with the official SDK's own server class (``MCPServer``).

Run as a program: ``python tests/mcp_servers.py stdio`` serves over stdin/stdout;
``python tests/mcp_servers.py http PORT`` serves Streamable HTTP on 127.0.0.1:PORT at ``/mcp``.
:func:`http_server` starts the HTTP one as a subprocess on a free loopback port, waits until it
answers, and stops it (``restart()`` stops and starts it on the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

HERE = Path(__file__).resolve()

ORDERS = {"A100": "shipped on 2 November, arriving Friday", "B200": "waiting for stock"}

app = MCPServer("orders")


@app.tool()
def order_status(order_id: str) -> str:
    """The shipping status of an order, by its order id (e.g. A100)."""
    status = ORDERS.get(order_id.strip().upper())
    if status is None:
        raise ToolError(f"no order {order_id}")
    return f"Order {order_id.upper()}: {status}"


@app.tool()
def whoami(ctx: Context) -> str:
    """Who is calling (the Authorization header the server received)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return str(headers.get("authorization")) if headers is not None else "stdio"


@app.tool()
async def slow(seconds: float) -> str:
    """Answers after ``seconds``."""
    await asyncio.sleep(seconds)
    return "finally"


@app.tool()
def secret_admin_tool() -> str:
    """Never allowlisted in the tests."""
    return "you should not see this"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class HttpServer:
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "http", str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            if self.process.returncode is not None:
                raise RuntimeError("the MCP test server exited")
            await asyncio.sleep(0.1)
        raise RuntimeError("the MCP test server did not start")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[HttpServer]:
    server = HttpServer(port=free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def stdio_command() -> tuple[str, list[str]]:
    return sys.executable, [str(HERE), "stdio"]


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        app.run()
    else:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
