"""``make demo`` end to end: the real service, curl, the in-memory room, the embedded stack."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from agents.messages import parse_outbound

pytestmark = [pytest.mark.embedded, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the demo posts with curl")
def test_demo_completes_the_intake_call_and_prints_what_the_caller_received(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.demo", "--out", str(tmp_path), "--timeout", "200"],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    messages = [parse_outbound(line) for line in lines]  # every line is a client payload
    assert messages[0].type == "agent_status"
    todo = [m for m in messages if m.type == "todo_list"]
    assert todo and all(i.status == "completed" for i in todo[-1].data.items)  # type: ignore[union-attr]
    agent_finals = [
        m.data.text for m in messages
        if m.type == "transcript_chunk" and m.data.is_final
        and m.data.participant_id.startswith("ai-agent-")
    ]
    assert len(agent_finals) >= 5  # greeting, three questions, the confirmation
    assert "Alice" in agent_finals[-1]  # the caller's name, heard and recorded
    assert any(m.type == "agent_metrics" for m in messages)
    assert "per-turn latency" in done.stderr
    with wave.open(str(tmp_path / "agent.wav")) as w:
        assert w.getnframes() / w.getframerate() > 5.0
    records = list((tmp_path / "jobs").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["end_reason"] == "conversation_ended:call_ended"
