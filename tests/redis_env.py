"""A real ``redis-server`` for the ``livekit`` tier (replicas sharing a job registry).

Runs on loopback inside the test's private network namespace (``scripts/netns-run``), without
persistence, so a restart comes back empty as a real cache would. Every process it starts it
stops. Not a test module: the fixture is imported by ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit_env import ServerProcess, require_real_server

REDIS_PORT = 16379
START_TIMEOUT = 15.0


class RedisServer(ServerProcess):
    """One ``redis-server`` on ``127.0.0.1:port``: start, stop, kill, pause, restart."""

    name = "redis-server"
    start_timeout = START_TIMEOUT

    def __init__(self, *, binary: Path, workdir: Path, port: int = REDIS_PORT) -> None:
        super().__init__(binary=binary, workdir=workdir)
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--protected-mode", "yes"]

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        proc.send_signal(sig)
        if sig != signal.SIGKILL:
            proc.send_signal(signal.SIGCONT)  # a paused server must see the signal

    def pause(self) -> None:
        """Unreachable but not gone (SIGSTOP): connections hang instead of being refused."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)


def redis_binary() -> Path:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("no redis-server: `make test-livekit` installs the Debian package "
                    "redis-server when run as root (apt-get install redis-server)")
    return Path(found)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` for one test (inside the tier's network namespace)."""
    require_real_server()  # the namespace check: the port is ours only in there
    server = RedisServer(binary=redis_binary(), workdir=tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TcpProxy:
    """A loopback TCP relay in the test's event loop, to cut one client off from a server while
    the others keep it: :meth:`cut` drops every connection and refuses new ones (as a network
    partition that resets), :meth:`restore` lets them through again."""

    def __init__(self, *, target_port: int, port: int) -> None:
        self.target_port = target_port
        self.port = port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst), name="tcp-proxy-pipe")
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.close()

    async def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def restore(self) -> None:
        self.cut_off = False

    async def aclose(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
