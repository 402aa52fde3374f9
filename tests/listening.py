"""A listening-only service configuration for the real-server tier and the density benchmark:
VAD, noise suppression and turns on every caller, transcripts through a loopback
OpenAI-compatible STT (``tests/openai_server.py``), no voice of its own. Not a test module."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def listening_agent(*, stt_url: str, artifacts: Path) -> dict[str, Any]:
    """The ``agent`` section of ``config.yaml`` for a listening-only service."""
    return {
        "artifacts_dir": str(artifacts),
        "persona": {"greeting": None, "todo_items": []},
        "room": {"participant_wait": 20},
        "pipeline": {
            "audio": {"pipeline": ["stt", "return"], "stt": "loopback-stt"},
            "providers": {"loopback-stt": {"type": "openai", "kind": "stt", "base_url": stt_url,
                                           "api_key": "loopback-key", "model": "whisper-1"}},
        },
    }
