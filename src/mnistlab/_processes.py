"""Worker processes that go with their parent: ``predict DIR``'s readers, ``serve --workers``' servers, and the
process pools that train a CNN's members and the shipped reader.

A parent killed with ``kill -9`` (the OOM killer, a job's time limit, a
supervisor's timeout) runs no cleanup: its forked workers were left behind,
``predict``'s waiting forever on a queue no one writes to, ``serve``'s
serving on the port, orphaned, none replaced when it died, a pool's training
on for nothing. ``end_with_parent`` asks the system for a SIGTERM (Linux), so
a server finishes its requests; ``exit_with_parent`` watches from a thread
(any system), for pool workers whose work is lost with the parent anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterator

__all__ = [
    "end_with_parent",
    "exit_with_parent",
    "hangup_ends_the_process",
    "joblib_workers_exit_with_parent",
    "loky_tracker_ignores_hangup",
]

_PR_SET_PDEATHSIG = 1  # prctl's option, from <linux/prctl.h>


def end_with_parent(parent: int) -> None:
    """In a forked worker: SIGTERM to it when ``parent`` (the pid that forked it) dies, where the system offers
    it (Linux; elsewhere nothing)."""
    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):  # not Linux
        return
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def hangup_ends_the_process() -> None:
    """SIGHUP's default action back (the process ends at once), unless it is ignored (``nohup``): for a server,
    which uvicorn stops on SIGINT and SIGTERM alone (the CLI's handler, which ends other commands as SIGTERM does,
    raised into its event loop: a traceback), and for the workers a command forks."""
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


def loky_tracker_ignores_hangup() -> None:
    """Start loky's resource tracker (if not running) with SIGHUP ignored, as it ignores SIGINT and SIGTERM: a
    closed terminal's SIGHUP to the command's process group killed it, and the one loky started in its place
    printed a KeyError traceback for each resource the command then released, while the command stopped."""
    from joblib.externals.loky.backend import resource_tracker

    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    kept = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an ignored signal stays ignored across exec
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, kept)


def exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Worker start-up: a daemon thread ends this process once ``parent`` is no longer its parent.

    When a process dies its children are handed to another (init, or a
    subreaper), so the parent pid changing is the signal, whatever killed it.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)  # the work is lost with the parent: nothing to flush or return

    threading.Thread(target=watch, name="mnistlab-exit-with-parent", daemon=True).start()


@contextlib.contextmanager
def joblib_workers_exit_with_parent() -> Iterator[None]:
    """For the block, the loky workers joblib starts (scikit-learn's ``n_jobs``: cross-validation's folds) run
    ``exit_with_parent``: a ``train --n-jobs 2`` killed outright left them and loky's resource trackers running
    for loky's idle timeout (5 minutes), holding its stdout. Another backend (Ray's, threads) is left as it is."""
    from joblib import parallel_config
    from joblib._parallel_backends import LokyBackend
    from joblib.parallel import get_active_backend

    if type(get_active_backend()[0]) is not LokyBackend:
        yield
        return
    loky_tracker_ignores_hangup()
    with parallel_config(backend="loky", initializer=exit_with_parent, initargs=(os.getpid(),)):
        yield
