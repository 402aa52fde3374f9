"""The image, without a Docker engine: the environment the Dockerfile describes, built and run.

Read from the Dockerfile itself (dockerfile-parse), so the two cannot drift: the runtime stage's
extras, its build-time model load (``external-agent prewarm --every-provider``), its ENV, USER,
WORKDIR, ENTRYPOINT + CMD and HEALTHCHECK. The venv is installed from this run's wheel with those
extras; the build step runs; then the image's command runs as the image's user, with tini as
PID 1 of a new PID namespace and the venv and working directory mounted read-only (as root; other
users run it as themselves with the same read-only check), HOME on a writable stand-in for /tmp.
SIGTERM to tini must reach the service's drain: readiness 503, offers 503, the held job cancelled
at drain_timeout, exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_KEY, API_SECRET, SECRET, free_port
from dockerfile_parse import DockerfileParser
from envs import (  # noqa: F401
    ROOT,
    Venv,
    box,
    clean_env,
    project_wheel,
    serve,
    venv_of,
    world_usable,
)
from pydantic import SecretStr

from app.jobs.tokens import mint_agent_token
from app.security.signatures import sign_headers

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(1500)]

ADMIN = "image-admin-token-0123456789abcdef"
IMAGE_VENV = "/opt/venv"


class Image:
    """What the Dockerfile's runtime stage says."""

    def __init__(self, path: Path) -> None:
        parser = DockerfileParser(str(path))
        stages: list[list[dict[str, Any]]] = []
        for item in parser.structure:
            if item["instruction"] == "FROM":
                stages.append([])
            if stages:
                stages[-1].append(item)
        runtime = stages[-1]

        def values(instruction: str) -> list[str]:
            return [i["value"] for i in runtime if i["instruction"] == instruction]

        args = dict(re.findall(r'^(\w+)=(.*)$', "\n".join(values("ARG")), re.MULTILINE))
        self.extras = tuple(args["EXTRAS"].split(","))
        self.env: dict[str, str] = parser.envs  # the last stage's, as the container sees them
        [user] = values("USER")
        self.uid, self.gid = (int(x) for x in user.split(":"))
        [self.workdir] = values("WORKDIR")
        [entrypoint], [cmd] = values("ENTRYPOINT"), values("CMD")
        self.command: list[str] = [*json.loads(entrypoint), *json.loads(cmd)]
        [health] = values("HEALTHCHECK")
        self.healthcheck: list[str] = json.loads(health.split("CMD", 1)[1])
        # The build step: the install line names the extras, the model load runs after it.
        [install] = [v for v in values("RUN") if "pip install" in v]
        assert '--no-index --find-links /wheels "livekit-external-agent[${EXTRAS}]"' in install
        [load] = [part for part in install.split("&&") if "external-agent prewarm" in part]
        self.build_step = shlex.split(load.strip())


def venv_snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def offer(job_id: str, server_url: str) -> bytes:
    token = mint_agent_token(
        api_key=API_KEY, api_secret=SecretStr(API_SECRET), room="image-room",
        identity=f"ai-agent-{job_id}", name="AI Assistant", metadata="", ttl_seconds=600,
    )
    return json.dumps(
        {
            "job_id": job_id, "dispatch_id": "AD_image", "job_type": "JT_ROOM",
            "room": {"sid": "RM_image", "name": "image-room"}, "metadata": "",
            "access_token": token, "server_url": server_url, "timestamp": int(time.time()),
        }
    ).encode()


def test_dockerfile_describes_the_production_image():
    image = Image(ROOT / "Dockerfile")
    assert set(image.extras) == {"embedded", "vision", "redis", "knowledge", "mcp"}
    assert image.command == ["/usr/bin/tini", "--", "external-agent", "serve"]
    assert image.healthcheck == ["external-agent", "health"]
    assert image.build_step == [f"{IMAGE_VENV}/bin/external-agent", "prewarm", "--every-provider"]
    assert image.uid >= 10000 and image.env["HOME"] == "/tmp"
    assert image.env["PATH"].startswith(f"{IMAGE_VENV}/bin:")


def test_image_environment_builds_starts_read_only_and_drains_through_tini(
    venv_of, serve, tmp_path, box
):
    image = Image(ROOT / "Dockerfile")
    venv = venv_of(Venv("image", image.extras))
    tini = shutil.which("tini") or "/usr/bin/tini"
    assert Path(tini).exists(), "tini missing: `make test-packaging` installs it (apt-get)"

    # The build step, as the Dockerfile runs it (root, before USER).
    def in_venv(argv: list[str]) -> list[str]:
        return [a.replace(IMAGE_VENV, str(venv.path)) for a in argv]

    build_env = clean_env(PATH=f"{venv.path}/bin:{os.environ['PATH']}", HOME=str(tmp_path))
    built = subprocess.run(
        in_venv(image.build_step), env=build_env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    summary = built.stdout.splitlines()[-1]  # after the JSON log lines
    assert re.match(r"loaded 6 providers \(.*embedded-vision, smart-turn\) in", summary), (
        built.stdout
    )

    # Run: the image's ENV, loopback instead of 0.0.0.0, a writable stand-in for /tmp.
    port, hang = free_port(), socket.create_server(("127.0.0.1", 0))
    # In the session's box: pytest's own tmp is private (mode 700) to the image's user.
    scratch = box / "tmp"  # /tmp: an emptyDir, writable
    scratch.mkdir()
    scratch.chmod(0o1777)
    workdir = box / "srv"  # WORKDIR: owned by root, not writable by the image's user
    workdir.mkdir()
    workdir.chmod(0o555)
    env = clean_env(
        **{k: v.replace(IMAGE_VENV, str(venv.path)) for k, v in image.env.items()},
        LIVEKIT_WEBHOOK_SECRET=SECRET,
        EXTERNAL_AGENT_ADMIN_TOKEN=ADMIN,
        EXTERNAL_AGENT_DRAIN_TIMEOUT="3",
    )
    env.update(
        PATH=f"{venv.path}/bin:{os.environ['PATH']}", HOME=str(scratch), TMPDIR=str(scratch),
        EXTERNAL_AGENT_HOST="127.0.0.1", EXTERNAL_AGENT_PORT=str(port),
    )
    command = [a if a != "/usr/bin/tini" else tini for a in image.command]
    # As root (CI) with an interpreter the image's user may run: the container's view.
    as_root = os.geteuid() == 0 and world_usable(venv.python)
    if as_root:
        # A container's view: tini is PID 1, the venv and WORKDIR are read-only mounts, the
        # process runs as the image's non-root user.
        script = (
            'for d in "$RO1" "$RO2"; do mount --bind "$d" "$d" && '
            'mount -o remount,bind,ro "$d" "$d" || exit 97; done; '
            f'exec setpriv --reuid {image.uid} --regid {image.gid} --clear-groups -- "$@"'
        )
        env.update(RO1=str(venv.path), RO2=str(workdir))
        command = ["unshare", "--pid", "--fork", "--mount", "--kill-child", "--",
                   "sh", "-c", script, "sh", *command]
    before = venv_snapshot(venv.path)
    served = serve(command, env, port, cwd=workdir)
    served.wait_ready(180)
    tini_pid = children(served.proc.pid)[0] if as_root else served.proc.pid
    if as_root:
        assert Path(f"/proc/{tini_pid}/status").read_text().count(f"\t{image.uid}\t") >= 1
        assert Path(f"/proc/{tini_pid}/comm").read_text().strip() == "tini"

    healthcheck = subprocess.run(
        image.healthcheck, env=env, capture_output=True, text=True, timeout=30
    )
    assert healthcheck.returncode == 0, healthcheck.stderr

    # A job whose LiveKit server accepts the connection and never answers: it stays connecting.
    client = httpx.Client(base_url=served.base, timeout=5)
    raw = offer("AJ_image", f"ws://127.0.0.1:{hang.getsockname()[1]}")
    headers = sign_headers(raw, SECRET, timestamp=int(time.time()))
    answer = client.post("/livekit/agent", content=raw, headers=headers)
    assert answer.json()["accepted"] is True, answer.text
    assert client.get("/health").json()["active_jobs"] == 1

    os.kill(tini_pid, 15)  # what `docker stop` / the kubelet sends to PID 1
    deadline = time.monotonic() + 10
    while client.get("/ready").status_code != 503:
        assert time.monotonic() < deadline, f"readiness never turned 503:\n{served.text()}"
        time.sleep(0.05)
    late = offer("AJ_late", "ws://127.0.0.1:9")
    headers = sign_headers(late, SECRET, timestamp=int(time.time()))
    refused = client.post("/livekit/agent", content=late, headers=headers)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert served.proc.wait(60) == 0, served.text()
    hang.close()

    events = served.events()
    finished = {
        e["job_id"]: (e["state"], e["reason"]) for e in events if e.get("event") == "job_finished"
    }
    assert finished == {"AJ_image": ("cancelled", "drain deadline")}
    names = [e.get("event") for e in events]
    assert names.index("drain_started") < names.index("drain_finished")
    assert names.index("drain_finished") < names.index("service_stopped")
    assert venv_snapshot(venv.path) == before, "the service wrote into its read-only install"
