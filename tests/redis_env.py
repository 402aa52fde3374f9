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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit_env import _die_with_parent, require_real_server

REDIS_PORT = 16379
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class RedisServer:
    """One ``redis-server`` on ``127.0.0.1:port``: start, stop, kill, restart."""

    def __init__(self, *, binary: Path, workdir: Path, port: int = REDIS_PORT) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.log_path = workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                 "--protected-mode", "yes"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if self._pong():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server not ready in {START_TIMEOUT} s")

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        if sig != signal.SIGKILL:
            proc.send_signal(signal.SIGCONT)  # a paused server must see the signal
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """Gone at once, and (no persistence) everything it held with it."""
        self.stop(sig=signal.SIGKILL)

    def pause(self) -> None:
        """Unreachable but not gone (SIGSTOP): connections hang instead of being refused."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self, *, down_for: float = 0.0) -> None:
        self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()


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
