"""The SDK's native log records stay native unless capture is asked for
(``agent.room.native_log_capture``): each case runs in a fresh process, since the SDK's native
library is initialised once per process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from agents.config import AgentConfig

ROOT = Path(__file__).resolve().parent.parent

# Sets the capture (or not), optionally after the SDK is initialised, then has the SDK fail to
# connect to a closed loopback port, which it logs about. Prints what reached Python's logger.
SCRIPT = textwrap.dedent("""
    import asyncio, logging, sys
    from livekit import rtc
    from livekit.rtc._ffi_client import FfiClient
    from agents.transport.native_logs import set_native_log_capture

    capture, late, port = sys.argv[1] == "on", sys.argv[2] == "late", int(sys.argv[3])
    if late:
        FfiClient.instance
    print("in effect", set_native_log_capture(capture))
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logging.getLogger("livekit").addHandler(Keep())
    logging.getLogger("livekit").setLevel(logging.DEBUG)

    async def main():
        try:
            await asyncio.wait_for(rtc.Room().connect(f"ws://127.0.0.1:{port}", "t"), 10)
        except rtc.ConnectError:
            print("connect refused")
        await asyncio.sleep(1.5)  # the native logger forwards its batches once a second

    asyncio.run(main())
    print("python records", len(records))
""")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(capture: str, when: str = "first") -> tuple[str, str]:
    env = {**os.environ, "RUST_LOG": "debug"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, capture, when, str(closed_port())], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=True)
    assert "connect refused" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def python_records(stdout: str) -> int:
    return int(stdout.rsplit("python records", 1)[1].split()[0])


def test_off_by_default() -> None:
    assert AgentConfig().room.native_log_capture is False


def test_capture_off_keeps_records_native() -> None:
    stdout, stderr = run("off")
    assert "in effect True" in stdout
    assert python_records(stdout) == 0
    # They went to the native logger instead, which RUST_LOG governs.
    assert "DEBUG livekit" in stderr


def test_capture_on_forwards_records_to_python() -> None:
    stdout, stderr = run("on")
    assert "in effect True" in stdout
    assert python_records(stdout) > 0
    assert "DEBUG livekit" not in stderr


def test_too_late_says_so_and_leaves_the_sdk_as_it_was() -> None:
    stdout, stderr = run("off", "late")
    assert "in effect False" in stdout
    assert "native_log_capture_too_late" in stdout + stderr
    assert python_records(stdout) > 0


def test_an_unknown_sdk_layout_is_left_as_it_was() -> None:
    code = ("from livekit.rtc import _ffi_client\n"
            "del _ffi_client.get_ffi_lib\n"
            "from agents.transport.native_logs import set_native_log_capture as capture\n"
            "print('in effect', capture(False), capture(True))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    assert "in effect False True" in proc.stdout
    assert "native_log_capture_unsupported" in proc.stdout + proc.stderr
