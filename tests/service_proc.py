"""The real service as a subprocess on a loopback port, for tests that need real sockets."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from test_service_e2e import cli


@contextmanager
def running_service(
    env: dict[str, str],
    port: int,
    log: Path,
    *,
    err_log: Path | None = None,
    ready_within: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """``external-agent serve`` with ``env``, ready (``/ready`` 200) before it is yielded;
    stopped with SIGTERM (then killed) on the way out. Output goes to ``log`` (standard error
    too, unless ``err_log`` is given)."""
    with log.open("wb") as out:
        if err_log is None:
            proc = subprocess.Popen(cli("serve"), env=env, stdout=out, stderr=subprocess.STDOUT)
        else:
            with err_log.open("wb") as err:
                proc = subprocess.Popen(cli("serve"), env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + ready_within
        while True:
            assert proc.poll() is None, log.read_text() + (err_log.read_text() if err_log else "")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
