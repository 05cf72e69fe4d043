"""Train ensemble members side by side, one worker process each.

Members are independent, so each trains in its own process with its own torch
threads, which keeps every core busy without the waits of several threads
inside one small convolution. The workers run the same ``train`` function a
sequential fit runs, with the same thread count, so the weights are the same.

loky (scikit-learn's process pool) starts clean interpreters, so torch's thread
pools are not forked mid-use and user scripts need no ``if __name__ ==
"__main__"`` guard. Each worker appends its epoch rows as JSON lines to a file
of its own, which the parent tails and hands to ``on_row`` as they come.

Workers end with their parent: an exception or Ctrl-C in the parent kills
them, and each worker watches its parent's pid, so a parent that is
terminated or killed outright (SIGTERM, SIGKILL, a crash) leaves no worker
behind: loky would otherwise keep an orphan alive for its idle timeout
(minutes), holding the parent's pipes and its resource tracker.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch
from joblib.externals.loky import ProcessPoolExecutor

__all__ = ["train_in_processes"]

# (job, X, y, on_row) -> trained module: loop.train_member
Train = Callable[..., torch.nn.Module]


def train_in_processes(
    train: Train,
    tasks: Sequence[tuple[Any, np.ndarray]],
    y: np.ndarray,
    *,
    n_workers: int,
    n_threads: int,
    on_row: Callable[[dict], None],
) -> list[dict[str, torch.Tensor]]:
    """Run ``train(job, X, y, on_row)`` for each (job, X) of ``tasks`` in ``n_workers`` processes.

    ``train`` and the jobs must pickle (module-level function, plain data). Returns
    each trained module's state dict, in task order. A failed task or Ctrl-C kills the
    other workers instead of leaving them running, then raises.
    """
    states: dict[int, dict[str, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory(prefix="mnistlab-members-") as tmp:
        logs = [_RowLog(Path(tmp) / f"member-{i}.jsonl") for i in range(len(tasks))]
        # A pool of our own, not loky's reusable one: joblib (scikit-learn's n_jobs) takes that global
        # executor for its own and fails on one it did not set up.
        pool = ProcessPoolExecutor(max_workers=n_workers, initializer=_exit_with_parent, initargs=(os.getpid(),))
        pending = {
            pool.submit(_worker, train, job, X, y, n_threads, str(logs[i].path)): i for i, (job, X) in enumerate(tasks)
        }
        try:
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for log in logs:
                    log.read(on_row)
                for future in done:
                    states[pending.pop(future)] = {k: torch.from_numpy(v) for k, v in future.result().items()}
        except BaseException:  # a failed member or Ctrl-C: stop the others instead of leaving them running
            pool.shutdown(wait=False, kill_workers=True)
            raise
        pool.shutdown(wait=True)
        for log in logs:
            log.read(on_row)
    return [states[i] for i in range(len(tasks))]


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Worker start-up: a daemon thread ends this process once ``parent`` is no longer its parent.

    When a process dies its children are handed to another (init, or a
    subreaper), so the parent pid changing is the signal, whatever killed it.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)  # the work is lost with the parent: nothing to flush or return

    threading.Thread(target=watch, name="mnistlab-exit-with-parent", daemon=True).start()


def _worker(train: Train, job, X: np.ndarray, y: np.ndarray, n_threads: int, row_file: str) -> dict[str, np.ndarray]:
    """Worker-process side: one trained module's state as numpy arrays (they pickle cheaply)."""
    torch.set_num_threads(n_threads)  # the parent's setting, so the weights match a sequential fit
    with open(row_file, "a", encoding="utf-8") as rows:

        def send(row: dict) -> None:  # one whole line per row, flushed: the parent reads whole lines
            rows.write(json.dumps(row) + "\n")
            rows.flush()

        net = train(job, torch.from_numpy(X), torch.from_numpy(y), send)
    return {k: v.detach().contiguous().numpy() for k, v in net.state_dict().items()}


class _RowLog:
    """Reads the complete JSON lines a worker appended to ``path`` since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self, record: Callable[[dict], None]) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(complete)
        for line in complete.splitlines():
            record(json.loads(line))
