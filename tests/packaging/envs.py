"""Fresh venvs for the packaging tier, built from one wheel of the working tree.

- The project's wheel is built once per run (``pip wheel --no-deps --no-build-isolation``: the
  build backend comes from the running venv, nothing is downloaded).
- Each venv is new for the run (``uv venv``) and gets ``<wheel>[extras]`` with ``uv pip install``:
  exactly what ``pip install 'livekit-external-agent[extras]'`` resolves, from uv's cache
  (``--offline`` first; only when the cache lacks something does uv ask PyPI, the only index).
  uv links the files from its cache, so a venv of the full image takes about 2 s once the cache
  is warm (the first time on a machine: about 20 s with pip's cache warm, more if it downloads).
  The cache is the machine's (``~/.cache/uv``), so a fresh clone in CI is warm too.
- Every venv is made from an interpreter a non-root user may run (:func:`shared_python`): the
  image test runs the service as the image's user.

The test modules import the fixtures from here (``from envs import project_wheel, ...``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"  # from the dev extra
INSTALL_TIMEOUT = 900  # a cold cache downloads a few hundred MB


def run(cmd: list[str], *, timeout: float = INSTALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def build_project_wheel(into: Path) -> Path:
    """The working tree's wheel (setuptools leaves build/ and *.egg-info, both git-ignored)."""
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel",
         "--no-deps", "--no-build-isolation", "--wheel-dir", str(into), str(ROOT)])
    [wheel] = into.glob("livekit_external_agent-*.whl")
    return wheel


def world_usable(path: Path) -> bool:
    """Another user can run ``path``: every directory on the way is searchable by others."""
    real = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in real.parents) and bool(
        os.stat(real).st_mode & 0o001
    )


def shared_python() -> str:
    """An interpreter a non-root user can run (the image's user runs the venv's python). The
    running one if others may use it, else the system's python3 when it is 3.11 or later (the
    Debian base image's is the same minor version), else the running one."""
    for candidate in (Path(sys.executable), Path("/usr/bin/python3")):
        if not candidate.exists() or not world_usable(candidate):
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True, text=True, timeout=30,
        )
        if probe.stdout.strip() == "True":
            return str(candidate)
    return sys.executable


@dataclass(frozen=True)
class Venv:
    name: str
    extras: tuple[str, ...]
    path: Path = Path()

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, script: str) -> Path:
        return self.path / "bin" / script


def make_venv(path: Path, *, base: str, wheel: Path, extras: tuple[str, ...]) -> None:
    """A new venv at ``path`` with ``wheel[extras]`` and its dependencies."""
    assert UV.exists(), f"{UV} missing: the dev extra installs uv (make install)"
    run([str(UV), "venv", "--quiet", "--python", base, str(path)])
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    install = [str(UV), "pip", "install", "--quiet", "--python", str(path / "bin" / "python")]
    try:
        run([*install, "--offline", target])
    except RuntimeError:  # something is not in uv's cache yet: PyPI
        run([*install, target])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a fresh shell would give the service: none of our settings, no venv."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("EXTERNAL_AGENT_", "LIVEKIT_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


BARE = Venv("bare", ())
REPORTED = Venv("embedded-redis", ("embedded", "redis"))  # issue 10's `pip install` line


@pytest.fixture(scope="session")
def box() -> Iterator[Path]:
    """A directory other users can enter (pytest's own tmp is private): venvs and the image's
    scratch space live here; removed at the end of the session."""
    path = Path(tempfile.mkdtemp(prefix="packaging-tier-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def venv_of(project_wheel: Path, box: Path) -> Callable[[Venv], Venv]:
    """``venv_of(Venv(name, extras))``: that venv, made once per session."""
    made: dict[str, Venv] = {}
    base = shared_python()

    def get(spec: Venv) -> Venv:
        if spec.name not in made:
            venv = Venv(spec.name, spec.extras, box / "venvs" / spec.name)
            make_venv(venv.path, base=base, wheel=project_wheel, extras=spec.extras)
            made[spec.name] = venv
        return made[spec.name]

    return get


class Served:
    """A started service: its base URL, its log, and a bounded stop."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base = f"http://127.0.0.1:{port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /ready answers 200 (the models are loaded); fails if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.text()}"
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in {timeout} s:\n{self.text()}"
            time.sleep(0.2)

    def stop(self, pid: int | None = None, timeout: float = 60.0) -> int:
        """SIGTERM (to ``pid``, default the process started) and the exit code."""
        if self.proc.poll() is None:
            os.kill(pid or self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"no exit {timeout} s after SIGTERM:\n{self.text()}") from e


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(cmd, env, port)`` starts a process; every one is stopped at teardown."""
    started: list[Served] = []

    def start(cmd: list[str], env: dict[str, str], port: int, cwd: Path | None = None) -> Served:
        log = tmp_path / f"service-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or tmp_path
            )
        served = Served(proc, port, log)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(10)

