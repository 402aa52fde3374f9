"""With ``log_format: json`` every line the service writes is JSON, from the first provider
loaded to uvicorn's last word (issue 16, item 9)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import free_port
from service_proc import running_service
from test_service_e2e import service_env

pytestmark = pytest.mark.slow


def test_every_start_up_and_shutdown_line_is_json(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(port, EXTERNAL_AGENT_LOG_FORMAT="json")
    env.pop("EXTERNAL_AGENT_JOB_BODY")  # the real agent: providers and models load and log
    out_path, err_path = tmp_path / "out.log", tmp_path / "err.log"
    with running_service(env, port, out_path, err_log=err_path, ready_within=90) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = out_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    names = {e["event"] for e in events}
    assert {"provider_built", "service_started", "service_stopped"} <= names
    assert any(e.get("logger") == "uvicorn.error" for e in events)
    assert err_path.read_text() == ""
