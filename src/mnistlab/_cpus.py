"""How many CPUs this process may use: the ones it may run on, fewer where a container's quota says so.

``os.cpu_count()`` counts the machine's CPUs. A container (Docker ``--cpus 2``,
a Kubernetes CPU limit) usually sees all of the host's 64 while its cgroup
lets it use 2: one worker or thread per visible CPU would be 32 times too many,
each holding its own memory, fighting for the same 2 CPUs. The quota is read
as the kernel gives it: cgroup v2's ``cpu.max`` ("200000 100000": 2 CPUs;
"max 100000": none), cgroup v1's ``cpu.cfs_quota_us`` over
``cpu.cfs_period_us`` (-1: none), in the process's own cgroup and the ones
above it (the smallest quota holds).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["usable_cpus"]

_CGROUPS = Path("/sys/fs/cgroup")
_OWN = Path("/proc/self/cgroup")


def usable_cpus(cgroups: Path = _CGROUPS, own: Path = _OWN) -> int:
    """The CPUs this process may run on (its affinity), at most its cgroup's CPU quota rounded up; at least 1.

    ``cgroups``, ``own``: where the cgroup file system is mounted and the file
    that names the process's cgroups (tests point them at folders of their own).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _quota(cgroups, own)
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else max(1, cpus)


def _quota(cgroups: Path, own: Path) -> float | None:
    """The smallest CPU quota (in CPUs) over the process's cgroup and its ancestors; None where none is set
    or the system does not say (no cgroups, a file this user may not read, one in a form not known here)."""
    quotas = [q for folder in _cgroup_folders(cgroups, own) if (q := _folder_quota(folder)) is not None]
    return min(quotas) if quotas else None


def _cgroup_folders(cgroups: Path, own: Path) -> list[Path]:
    """The folders that may hold the CPU controller's files for this process: its cgroup (v2, or v1's
    cpu controller) and each one above it, up to the mount point."""
    try:
        lines = own.read_text().splitlines()
    except OSError:
        lines = []
    folders = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        names = controllers.split(",")
        if controllers == "":  # cgroup v2: one unified hierarchy
            base = cgroups
        elif "cpu" in names:  # cgroup v1: the cpu controller's own hierarchy
            base = cgroups / controllers if (cgroups / controllers).is_dir() else cgroups / "cpu"
        else:
            continue
        parts = [p for p in path.strip().split("/") if p and p != ".."]
        folders += [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return folders or [cgroups, cgroups / "cpu"]


def _folder_quota(folder: Path) -> float | None:
    try:
        if (folder / "cpu.max").is_file():
            limit, period = (folder / "cpu.max").read_text().split()[:2]
            return None if limit == "max" or int(limit) <= 0 else int(limit) / int(period)
        if (folder / "cpu.cfs_quota_us").is_file():
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            return None if quota <= 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None
