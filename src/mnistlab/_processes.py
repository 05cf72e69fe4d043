"""Worker processes that go with their parent: ``predict DIR``'s readers and ``serve --workers``' servers.

A parent killed with ``kill -9`` (the OOM killer, a job's time limit, a
supervisor's timeout) runs no cleanup: its forked workers were left behind,
``predict``'s waiting forever on a queue no one writes to, ``serve``'s
serving on the port, orphaned, none replaced when it died.
"""

from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["end_with_parent"]

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
