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

Elsewhere than in this machine's pool: ``members_run_by(runner)`` installs,
for a block, a function that trains the members instead (``mnistlab.lab.cluster``
installs one that makes each member a task on a Ray cluster). It gets the same
arguments as ``train_in_processes`` less ``n_workers`` (the place decides how
many run at once) and must return the same state dicts; ``train_one`` is the
worker side to call, so that a member's weights are the same wherever it trains.
This module knows nothing of Ray: the runner is plugged in from outside.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from joblib.externals.loky import ProcessPoolExecutor

from mnistlab._processes import exit_with_parent, loky_tracker_ignores_hangup

if TYPE_CHECKING:
    import torch

__all__ = ["train_in_processes", "train_one", "members_run_by", "member_runner", "MemberRunner"]

# (job, X, y, on_row) -> trained module: loop.train_member
Train = Callable[..., "torch.nn.Module"]
# (train, tasks, y, *, n_threads, on_row) -> each member's state dict, in task order
MemberRunner = Callable[..., "list[dict[str, torch.Tensor]]"]

_runner: ContextVar[MemberRunner | None] = ContextVar("mnistlab_member_runner", default=None)


@contextlib.contextmanager
def members_run_by(runner: MemberRunner) -> Iterator[None]:
    """For the block, ensembles fitted in this thread train their members with ``runner`` instead of a local pool."""
    token = _runner.set(runner)
    try:
        yield
    finally:
        _runner.reset(token)


def member_runner() -> MemberRunner | None:
    """The runner ``members_run_by`` installed for this block; None: this machine's processes."""
    return _runner.get()


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
    import torch  # loaded already by the estimator that calls this; not at import, see members_run_by

    states: dict[int, dict[str, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory(prefix="mnistlab-members-") as tmp:
        logs = [_RowLog(Path(tmp) / f"member-{i}.jsonl") for i in range(len(tasks))]
        # A pool of our own, not loky's reusable one: joblib (scikit-learn's n_jobs) takes that global
        # executor for its own and fails on one it did not set up.
        loky_tracker_ignores_hangup()
        pool = ProcessPoolExecutor(max_workers=n_workers, initializer=exit_with_parent, initargs=(os.getpid(),))
        todo, pending = iter(enumerate(tasks)), {}

        def submit(count: int) -> None:
            # No more members submitted than workers can take: loky's shutdown(kill_workers=True) with members
            # still queued left their ids to its manager thread, which printed a KeyError traceback after Ctrl+C.
            for i, (job, X) in itertools.islice(todo, count):
                pending[pool.submit(_worker, train, job, X, y, n_threads, str(logs[i].path))] = i

        try:
            submit(n_workers)
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for log in logs:
                    log.read(on_row)
                for future in done:
                    states[pending.pop(future)] = {k: torch.from_numpy(v) for k, v in future.result().items()}
                submit(len(done))
        except BaseException:  # a failed member or Ctrl-C: stop the others instead of leaving them running
            pool.shutdown(wait=False, kill_workers=True)
            raise
        pool.shutdown(wait=True)
        for log in logs:
            log.read(on_row)
    return [states[i] for i in range(len(tasks))]


def _worker(train: Train, job, X: np.ndarray, y: np.ndarray, n_threads: int, row_file: str) -> dict[str, np.ndarray]:
    """Worker-process side: ``train_one``, its epoch rows appended to ``row_file`` for the parent to tail."""
    with open(row_file, "a", encoding="utf-8") as rows:

        def send(row: dict) -> None:  # one whole line per row, flushed: the parent reads whole lines
            rows.write(json.dumps(row) + "\n")
            rows.flush()

        return train_one(train, job, X, y, n_threads, send)


def train_one(
    train: Train, job, X: np.ndarray, y: np.ndarray, n_threads: int, on_row: Callable[[dict], None]
) -> dict[str, np.ndarray]:
    """One member trained in this process with ``n_threads`` torch threads; its state as numpy arrays.

    The same steps wherever a member trains (a local worker, a cluster task),
    so the weights are those of a sequential fit with that thread count.
    Arrays come back as numpy: they pickle cheaply and need no torch to ship.
    """
    import torch  # seconds to import: only in a process that trains

    torch.set_num_threads(n_threads)  # the fitting process's setting, so the weights match a sequential fit
    # Read-only arrays (zero-copy from an object store) are copied: torch tensors must be writable.
    X, y = np.require(X, requirements="W"), np.require(y, requirements="W")
    net = train(job, torch.from_numpy(X), torch.from_numpy(y), on_row)
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
