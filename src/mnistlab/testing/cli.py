"""Run the ``mnistlab`` command line in a fresh Python process, as a user's shell would."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence

from mnistlab.errors import ParameterError

__all__ = ["run_cli"]


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m mnistlab.cli ARGS`` with this environment plus ``env``; text output captured, bounded in time.

    ``args`` is a list of arguments (``["predict", "x.png"]``), not one string; past ``timeout`` seconds the
    process is killed and ``subprocess.TimeoutExpired`` raised.
    """
    if isinstance(args, (str, bytes)):
        raise ParameterError(
            "args", f"{{param}} must be a list of arguments such as {shlex.split(str(args))!r}, not one string."
        )
    return subprocess.run(
        [sys.executable, "-m", "mnistlab.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
