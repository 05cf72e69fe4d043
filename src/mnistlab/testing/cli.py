"""Run the ``mnistlab`` command line in a fresh Python process, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["run_cli"]


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m mnistlab.cli ARGS`` with this environment plus ``env``; text output captured, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "mnistlab.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
