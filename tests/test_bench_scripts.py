"""The benchmark scripts' own helpers and arguments (benchmarks/ is put on sys.path, as the scripts run)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from counts import at_least_one  # noqa: E402


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    src = str(BENCHMARKS.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_count_is_a_whole_number_of_one_or_more():
    assert at_least_one("3") == 3
    for text in ("0", "-2", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            at_least_one(text)


@pytest.mark.parametrize(
    ("name", "option"),
    [("bench_load.py", "--trials"), ("bench_photo_cpu.py", "--rounds"), ("bench_photo_cpu.py", "--reps")],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_count_below_one_is_a_usage_error_not_a_traceback(name, option, value):
    # bench_load.py --trials 0 raised UnboundLocalError; bench_photo_cpu.py wrote its photos and ran a process
    # per tree before min() of no times failed.
    done = script(name, option, value)
    assert done.returncode == 2, done.stderr
    assert f"argument {option}: must be 1 or more, not {value}" in done.stderr
    assert "Traceback" not in done.stderr
