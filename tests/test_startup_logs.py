"""With ``log_format: json`` every line the service writes is JSON, from the first provider
loaded to uvicorn's last word (issue 16, item 9)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from test_service_e2e import cli, service_env

pytestmark = pytest.mark.slow


def test_every_start_up_and_shutdown_line_is_json(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(port, EXTERNAL_AGENT_LOG_FORMAT="json")
    env.pop("EXTERNAL_AGENT_JOB_BODY")  # the real agent: providers and models load and log
    out_path, err_path = tmp_path / "out.log", tmp_path / "err.log"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(cli("serve"), env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, err_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = out_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    names = {e["event"] for e in events}
    assert {"provider_built", "service_started", "service_stopped"} <= names
    assert any(e.get("logger") == "uvicorn.error" for e in events)
    assert err_path.read_text() == ""
