"""How much CPU this process may use, in cores: its CPU affinity, and its cgroup's CPU quota.

A container's CPU limit (Kubernetes ``resources.limits.cpu``, ``docker run --cpus``) is a CFS
quota on the container's cgroup, not a smaller CPU set: ``os.sched_getaffinity`` still lists
every core of the node. Admission that took the node's 16 cores as its budget would admit jobs
long after a 1-core limit throttles the process. The quota is read from the cgroup filesystem,
v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), along the process's
cgroup path up to the root (a parent's limit binds too); the smallest one counts. It can change
while the process runs (in-place pod resize), so the load monitor reads it again now and then.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V2_MOUNTS = ("", "unified")
_V1_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def affinity_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ancestors(path: str) -> list[str]:
    """``/a/b`` -> ``["/a/b", "/a", "/"]``."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(root: Path, path: str) -> float | None:
    limits: list[float] = []
    for mount in _V2_MOUNTS:
        base = root / mount if mount else root
        for p in _ancestors(path):
            text = _read(base / p.lstrip("/") / "cpu.max")
            if text is None:
                continue
            quota, _, period = text.partition(" ")
            if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
                limits.append(int(quota) / int(period))
        if limits:
            break
    return min(limits) if limits else None


def _v1_quota(root: Path, path: str) -> float | None:
    limits: list[float] = []
    for mount in _V1_MOUNTS:
        base = root / mount
        for p in _ancestors(path):
            folder = base / p.lstrip("/")
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota is None or period is None:
                continue
            try:
                q, t = int(quota), int(period)
            except ValueError:
                continue
            if q > 0 and t > 0:
                limits.append(q / t)
        if limits:
            break
    return min(limits) if limits else None


def cgroup_quota_cores(*, proc_cgroup: Path = Path("/proc/self/cgroup"),
                       root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup, in cores (``None``: no quota, or unknown)."""
    text = _read(proc_cgroup)
    if text is None:
        return None
    limits: list[float] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not hierarchy or not path:
            continue
        if controllers == "":  # v2 (unified)
            found = _v2_quota(root, path)
        elif "cpu" in controllers.split(","):
            found = _v1_quota(root, path)
        else:
            continue
        if found is not None:
            limits.append(found)
    return min(limits) if limits else None


def usable_cores() -> float:
    """Cores this process may use: its affinity, capped by its cgroup's CPU quota."""
    cores = float(affinity_cores())
    quota = cgroup_quota_cores()
    return min(cores, quota) if quota is not None else cores
