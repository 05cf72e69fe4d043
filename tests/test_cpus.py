"""usable_cpus: a container's CPU quota, read from cgroup files laid out as the kernel lays them out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnistlab._cpus import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(AFFINITY < 2, reason="a quota below the CPUs needs two CPUs to show")


def _cgroups(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "own").write_text(own)
    return root, tmp_path / "own"


@needs_two
def test_a_cgroup_v2_quota_of_half_a_cpu_leaves_one(tmp_path):
    root, own = _cgroups(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"})
    assert usable_cpus(root, own) == 1


def test_no_quota_leaves_every_cpu_the_process_may_run_on(tmp_path):
    root, own = _cgroups(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert usable_cpus(root, own) == AFFINITY


@needs_two
def test_the_smallest_quota_above_the_process_holds(tmp_path):
    # Kubernetes: the pod's cgroup holds the limit, the container's own (below it) has none.
    files = {"kubepods/pod1/cpu.max": "100000 100000\n", "kubepods/pod1/ctr/cpu.max": "max 100000\n"}
    root, own = _cgroups(tmp_path, "0::/kubepods/pod1/ctr\n", files)
    assert usable_cpus(root, own) == 1


@needs_two
def test_a_cgroup_v1_cfs_quota_counts(tmp_path):
    files = {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    }
    own = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
    root, own_file = _cgroups(tmp_path, own, files)
    assert usable_cpus(root, own_file) == 1


@pytest.mark.parametrize("text", ["-1\n", "garbage\n", ""])
def test_a_v1_quota_unset_or_unreadable_is_no_quota(tmp_path, text):
    files = {"cpu/cpu.cfs_quota_us": text, "cpu/cpu.cfs_period_us": "100000\n"}
    root, own = _cgroups(tmp_path, "4:cpu:/\n", files)
    assert usable_cpus(root, own) == AFFINITY


def test_no_cgroups_at_all_is_no_quota(tmp_path):
    assert usable_cpus(tmp_path / "none", tmp_path / "no-such-file") == AFFINITY
