"""The real service under uvicorn on a free loopback port, driven by curl and the CLI, and
stopped with SIGTERM to watch the drain."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ADMIN, API_KEY, API_SECRET, SECRET, free_port

from app.security.signatures import sign_headers

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")

BIN = Path(sys.executable).parent


def cli(*args: str) -> list[str]:
    script = BIN / "external-agent"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "app.cli", *args]


class Service:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base = f"http://127.0.0.1:{port}"

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def finished(self) -> dict[str, tuple[str, str]]:
        return {
            e["job_id"]: (e["state"], e["reason"])
            for e in self.logs()
            if e.get("event") == "job_finished"
        }


def service_env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXTERNAL_AGENT_", "LIVEKIT_"))}
    env.update(
        {
            "LIVEKIT_WEBHOOK_SECRET": SECRET,
            "EXTERNAL_AGENT_DEV_MODE": "true",
            "EXTERNAL_AGENT_JOB_BODY": "app.jobs.bodies:hold",
            "EXTERNAL_AGENT_ADMIN_TOKEN": ADMIN,
            "EXTERNAL_AGENT_DRAIN_TIMEOUT": "2",
            "EXTERNAL_AGENT_PORT": str(port),
            "LIVEKIT_URL": "wss://livekit.example.com",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cli("serve"), env=service_env(port), stdout=out, stderr=out)
    svc = Service(proc, port, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{svc.base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.1)
        yield svc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def offer(job_id: str, metadata: str = "") -> bytes:
    body = {
        "job_id": job_id,
        "dispatch_id": "AD_1",
        "job_type": "JT_ROOM",
        "room": {"sid": "RM_1", "name": "e2e-room", "created_at": int(time.time())},
        "metadata": metadata,
        "access_token": "eyJhbGc.e2e",
        "server_url": "wss://livekit.example.com",
        "timestamp": int(time.time()),
    }
    return json.dumps(body).encode()


def curl_signed(service: Service, tmp_path: Path, raw: bytes) -> dict[str, Any]:
    """Sign with `external-agent sign`, post with `curl -H @headers`; the README's recipe."""
    body_file, header_file = tmp_path / "body.json", tmp_path / "headers.txt"
    body_file.write_bytes(raw)
    env = service_env(service.port)
    with body_file.open("rb") as stdin, header_file.open("wb") as stdout:
        subprocess.run(cli("sign"), stdin=stdin, stdout=stdout, env=env, check=True, timeout=30)
    lines = header_file.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["X-LiveKit-Signature", "X-LiveKit-Timestamp"]
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"@{header_file}",
            "--data-binary",
            f"@{body_file}",
            f"{service.base}/livekit/agent",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    text, _, code = out.stdout.decode().rpartition("\n")
    return {"status": int(code), "body": json.loads(text)}


def test_curl_with_external_agent_sign_starts_a_job(service: Service, tmp_path: Path):
    answer = curl_signed(service, tmp_path, offer("AJ_curl"))
    assert answer == {
        "status": 200,
        "body": {
            "accepted": True,
            "participant_identity": "ai-agent-AJ_curl",
            "participant_name": "AI Assistant",
            "participant_metadata": '{"type":"ai"}',
        },
    }
    auth = {"Authorization": f"Bearer {ADMIN}"}
    job = httpx.get(f"{service.base}/jobs/AJ_curl", headers=auth).json()
    assert job["state"] in ("accepted", "connecting", "running")
    tampered = offer("AJ_curl2").replace(b"e2e-room", b"e2e-roon")
    signed_for_other = curl_signed(service, tmp_path, offer("AJ_curl2"))
    assert signed_for_other["body"]["accepted"] is True
    raw = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-LiveKit-Signature: 00",
            "--data-binary",
            tampered.decode(),
            f"{service.base}/livekit/agent",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert raw.stdout == b"401"
    metrics = httpx.get(f"{service.base}/metrics").text
    assert 'external_agent_webhooks_total{outcome="accepted"} 2.0' in metrics
    assert 'external_agent_jobs_total{source="webhook",state="running"}' in metrics


def test_dispatch_command_posts_a_signed_offer(service: Service):
    env = service_env(service.port)
    # Without API keys neither side can mint a token: a clear refusal, exit code 1.
    out = subprocess.run(
        cli("dispatch", "--room", "cli-room", "--job-id", "AJ_nokey"),
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 1 and b"LIVEKIT_API_KEY" in out.stdout
    keyed = {**env, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET}
    out = subprocess.run(
        cli("dispatch", "--room", "cli-room", "--job-id", "AJ_cli", "--metadata", "0"),
        env=keyed,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert '"accepted":true' in out.stdout.decode().replace(" ", "")
    again = subprocess.run(
        cli("dispatch", "--room", "cli-room", "--job-type", "JT_PUBLISHER"),
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert again.returncode == 2 and b"--participant" in again.stderr


def test_sigterm_drains_then_exits_zero(service: Service):
    post = httpx.Client(base_url=service.base, timeout=5)
    short, long = offer("AJ_short", metadata="0.3"), offer("AJ_long")
    for raw in (short, long):
        headers = sign_headers(raw, SECRET, timestamp=int(time.time()))
        assert post.post("/livekit/agent", content=raw, headers=headers).json()["accepted"]

    service.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while post.get("/ready").status_code != 503:
        assert time.monotonic() < deadline, "readiness never turned 503"
        time.sleep(0.02)
    late = offer("AJ_late")
    headers = sign_headers(late, SECRET, timestamp=int(time.time()))
    r = post.post("/livekit/agent", content=late, headers=headers)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert post.get("/health").json()["status"] == "draining"

    assert service.proc.wait(30) == 0
    finished = service.finished()
    assert finished["AJ_short"] == ("completed", "held")
    assert finished["AJ_long"] == ("cancelled", "drain deadline")
    assert "AJ_late" not in finished
    events = [e.get("event") for e in service.logs()]
    assert events.index("drain_started") < events.index("drain_finished")
    assert events.index("drain_finished") < events.index("service_stopped")


def test_a_replica_that_cannot_hear_drains_and_exits_for_a_fresh_one(tmp_path: Path):
    """The agent's health_problem (a job receives audio and decodes none): no new job, the
    running ones get the drain, then exit 0 so that the orchestrator starts a new process."""
    port = free_port()
    log = tmp_path / "service.log"
    env = service_env(port, EXTERNAL_AGENT_JOB_BODY="app.jobs.bodies:deaf")
    with log.open("wb") as out:
        proc = subprocess.Popen(cli("serve"), env=env, stdout=out, stderr=out)
    svc = Service(proc, port, log)
    try:
        post = httpx.Client(base_url=svc.base, timeout=5)
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if post.get("/ready").status_code == 200:
                    break
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.1)
        raw = offer("AJ_deaf", metadata="1.0")
        headers = sign_headers(raw, SECRET, timestamp=int(time.time()))
        assert post.post("/livekit/agent", content=raw, headers=headers).json()["accepted"]
        deadline = time.monotonic() + 10
        while (ready := post.get("/ready")).status_code != 503:
            assert time.monotonic() < deadline, "readiness never turned 503"
            time.sleep(0.05)
        assert ready.json()["reason"].startswith("audio_not_decoded: job AJ_deaf")
        late = offer("AJ_after")
        r = post.post("/livekit/agent", content=late,
                      headers=sign_headers(late, SECRET, timestamp=int(time.time())))
        assert r.status_code == 503 and "retry-after" in r.headers
        assert "external_agent_unhealthy 1.0" in post.get("/metrics").text
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    finished = svc.finished()
    assert finished["AJ_deaf"] == ("completed", "held")  # within the drain's 2 s
    assert "AJ_after" not in finished
    events = {e.get("event"): e for e in svc.logs()}
    assert events["replica_unhealthy"]["action"] == "drain and exit"
    assert events["shutdown_signal"]["signal"] == "unhealthy"
    assert "service_stopped" in events


def test_health_command_and_slot_utilisation_follow_the_service(service: Service):
    env = service_env(service.port)
    ok = subprocess.run(cli("health"), env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "ok"
    post = httpx.Client(base_url=service.base, timeout=5)
    assert "external_agent_job_slots_utilization 0.0" in post.get("/metrics").text
    for job_id in ("AJ_slot1", "AJ_slot2"):
        raw = offer(job_id)
        headers = sign_headers(raw, SECRET, timestamp=int(time.time()))
        assert post.post("/livekit/agent", content=raw, headers=headers).json()["accepted"]
    # Two held jobs of max_jobs=10: the autoscaler's per-pod metric.
    assert "external_agent_job_slots_utilization 0.2" in post.get("/metrics").text
    closed = subprocess.run(
        cli("health", "--port", str(free_port())), env=env, capture_output=True, timeout=30
    )
    assert closed.returncode == 1 and b"unhealthy" in closed.stderr
