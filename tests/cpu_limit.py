"""A CPU limit for a process the tests started: a cgroup with a CFS quota, as a container's CPU
limit is (``docker run --cpus``, Kubernetes ``limits.cpu``). Needs root and a writable cgroup
filesystem (v1 ``cpu`` controller or v2 with ``cpu`` available), as the ``livekit`` tier has.
Not a test module."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _v1() -> Path | None:
    for name in ("cpu", "cpu,cpuacct"):
        if (ROOT / name / "cpu.cfs_quota_us").exists():
            return ROOT / name
    return None


def _v2() -> Path | None:
    controllers = ROOT / "cgroup.controllers"
    with contextlib.suppress(OSError):
        if "cpu" in controllers.read_text().split():
            with contextlib.suppress(OSError):  # the root may already delegate it
                (ROOT / "cgroup.subtree_control").write_text("+cpu")
            return ROOT
    return None


def _write_quota(group: Path, cores: float, *, v1: bool) -> None:
    quota = max(1000, int(cores * PERIOD_US))
    if v1:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    else:
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")


def set_limit(group: Path, cores: float) -> None:
    """Change the quota of a group :func:`cpu_limited` made, in place (as Kubernetes resizes a
    running pod's CPU limit)."""
    _write_quota(group, cores, v1=(group / "cpu.cfs_quota_us").exists())


@contextlib.contextmanager
def cpu_limited(pid: int, cores: float, *, name: str) -> Iterator[Path]:
    """Move ``pid`` (all its threads) into a new cgroup limited to ``cores``; on exit, move it
    back if it still runs and remove the cgroup."""
    if os.geteuid() != 0:
        pytest.fail("a CPU limit needs root (the livekit tier runs as root in CI)")
    v1 = _v1()
    base = v1 or _v2()
    if base is None:
        pytest.fail(f"no cgroup cpu controller under {ROOT} to limit the service's CPU")
    group = base / f"{name}-{os.getpid()}"
    group.mkdir(exist_ok=True)
    try:
        _write_quota(group, cores, v1=v1 is not None)
        (group / "cgroup.procs").write_text(str(pid))
        yield group
    finally:
        with contextlib.suppress(OSError):
            for left in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (base / "cgroup.procs").write_text(left)
        with contextlib.suppress(OSError):
            group.rmdir()
