"""A real ``redis-server`` for the ``livekit`` tier (replicas sharing a job registry).

Runs on loopback inside the test's private network namespace (``scripts/netns-run``), without
persistence, so a restart comes back empty as a real cache would. Every process it starts it
stops. Not a test module: the fixture is imported by ``conftest.py``.
"""

from __future__ import annotations

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
