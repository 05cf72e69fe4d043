"""Worker processes end with their parent: a terminated or killed training leaves no process behind.

Real subprocesses: ``mnistlab train ensemble`` (members in loky workers) and a
two-member CNN fitted from the Python API, stopped once their workers have
reported an epoch. Every process below the parent at that moment (workers,
loky's and multiprocessing's resource trackers) must be gone after a short,
bounded wait.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

PROC = Path("/proc")
pytestmark = pytest.mark.skipif(not PROC.is_dir(), reason="reads the process table from /proc")

API_SCRIPT = """
import sys
import numpy as np
from mnistlab.models.cnn.estimator import CNNClassifier

rng = np.random.default_rng(0)
X, y = rng.integers(0, 256, (600, 784), dtype=np.uint8), np.arange(600) % 10
report = lambda row: print("epoch done", file=sys.stderr, flush=True)
CNNClassifier(arch="tiny", epochs=200, n_members=2, n_jobs=2, n_threads=1, callback=report).fit(X, y)
"""


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended while we looked
                continue
            table[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return table


def _descendants(root: int) -> set[int]:
    table, found, frontier = _parents(), set(), {root}
    while frontier:
        frontier = {pid for pid, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie waiting to be reaped has ended)."""
    alive = set()
    for pid in pids:
        try:
            state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _stop_during_training(
    command: list[str], marker: str, sig: int, below_at_least: int = 0, *, group: bool = False, env=None
) -> tuple[int, set[int], set[int], str]:
    """Run ``command``, send ``sig`` once stderr shows ``marker`` (and ``below_at_least`` processes run below it);
    return (exit code, processes below it, survivors, its stderr). ``group``: to its whole process group, as a
    terminal sends it; ``env``: the command's environment (None: this process's)."""
    # SIGINT as a terminal's Ctrl+C gives it: not ignored, as a test run started in the background would leave it.
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=restore, start_new_session=group, env=env
    )
    seen, below = b"", set()
    try:
        deadline = time.monotonic() + 240
        while marker.encode() not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 1)[0]:
                seen += os.read(proc.stderr.fileno(), 65536)
        assert marker.encode() in seen, seen.decode(errors="replace")[-2000:]
        below = _descendants(proc.pid)
        while len(below) < below_at_least and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            below = _descendants(proc.pid)
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        code = proc.wait(timeout=60)
        # Up to the end of its stderr, or 5 s of silence: a worker left running holds the pipe open.
        while select.select([proc.stderr], [], [], 5)[0] and (chunk := os.read(proc.stderr.fileno(), 65536)):
            seen += chunk
        deadline = time.monotonic() + 15  # the workers look at their parent every half second
        while _running(below) and time.monotonic() < deadline:
            time.sleep(0.2)
        return code, below, _running(below), seen.decode(errors="replace")
    finally:
        proc.kill()
        proc.stderr.close()
        for pid in _running(below):  # a failing run must not leave its orphans to the next test
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_of_train_stops_its_workers_without_a_traceback(tmp_path, sig):
    """10 members on 2 workers: the pool was shut down with members still queued, and loky's manager thread
    printed a KeyError traceback after the command had been stopped."""
    command = [sys.executable, "-m", "mnistlab.cli", "train", "ensemble", "--limit", "500", "--n-jobs", "2"]
    code, below, survivors, stderr = _stop_during_training(
        [*command, "--out", str(tmp_path / "m")], "member epochs done", sig
    )
    assert len(below) >= 2  # the two workers at least (and loky's resource tracker)
    assert code == 128 + sig and survivors == set()
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert not (tmp_path / "m" / "model.json").exists()


@pytest.mark.parametrize(
    ("recipe", "marker"), [("ensemble", "member epochs done"), ("logreg", "-fold cross-validation on")]
)
def test_a_closed_terminal_stops_train_and_its_workers_without_a_traceback(tmp_path, recipe, marker):
    """SIGHUP to the process group (a terminal closed, an ssh session dropped) killed train outright, its save and
    cleanup never run. Ended as by SIGTERM, loky's resource tracker, killed by the same SIGHUP, was started again
    and printed a KeyError traceback for each resource the command released: it now ignores SIGHUP."""
    command = [
        sys.executable,
        "-m",
        "mnistlab.cli",
        "train",
        recipe,
        "--limit",
        "20000" if recipe == "logreg" else "500",
    ]
    code, below, survivors, stderr = _stop_during_training(
        [*command, "--n-jobs", "2", "--out", str(tmp_path / "m")], marker, signal.SIGHUP, 3, group=True
    )
    assert len(below) >= 3 and code == 128 + signal.SIGHUP and survivors == set(), stderr
    assert "Traceback" not in stderr and "Error" not in stderr and "Warning" not in stderr, stderr
    assert not (tmp_path / "m" / "model.json").exists()


def test_sigkill_of_a_python_fit_stops_its_workers(tmp_path):
    """No handler runs on SIGKILL: the workers notice on their own that their parent is gone. (Nor does the fit's
    temporary folder go: it is made under tmp_path, not left in the machine's /tmp by every run of the suite.)"""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-c", API_SCRIPT]
    code, below, survivors, _ = _stop_during_training(command, "epoch done", signal.SIGKILL, env=env)
    assert len(below) >= 2 and code == -signal.SIGKILL
    assert survivors == set()


def test_sigkill_of_train_stops_its_cross_validation_workers(tmp_path):
    """joblib's loky workers (``--n-jobs 2``'s folds) and its resource trackers outlived a ``kill -9``d train by
    loky's idle timeout, 5 minutes, holding the pipe of whoever ran it."""
    command = [sys.executable, "-m", "mnistlab.cli", "train", "logreg", "--limit", "20000", "--n-jobs", "2"]
    code, below, survivors, _ = _stop_during_training(
        [*command, "--out", str(tmp_path / "m")], "-fold cross-validation on", signal.SIGKILL, below_at_least=3
    )
    assert len(below) >= 3  # the two workers and loky's resource tracker at least
    assert code == -signal.SIGKILL and survivors == set()
