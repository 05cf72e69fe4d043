"""``swapping_link(link, first, second)``: another process pointing a link at one folder, then the other, as fast
as it can (``ln -sfn v2 current`` in a loop), for tests of code that must read one whole model through it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["swapping_link"]

# Each swap is atomic (a new link renamed over the old), as `ln -sfn` and a deployment's switch are.
_SWAPS = (
    "import itertools, os, sys\n"
    "print('swapping', flush=True)\n"
    "for target in itertools.cycle(sys.argv[1:3]):\n"
    "    os.symlink(target, sys.argv[3] + '.new')\n"
    "    os.replace(sys.argv[3] + '.new', sys.argv[3])\n"
)


@contextmanager
def swapping_link(link: str | os.PathLike, first: str | os.PathLike, second: str | os.PathLike) -> Iterator[None]:
    """While the block runs, ``link`` is pointed at ``first``, then ``second``, and so on, by another process,
    which has begun when the block starts and is stopped when it ends."""
    args = [sys.executable, "-c", _SWAPS, os.fspath(first), os.fspath(second), os.fspath(link)]
    swapper = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        if swapper.stdout is None or swapper.stdout.readline() != "swapping\n":
            raise RuntimeError("the process that swaps the link did not start")
        yield
    finally:
        swapper.kill()
        swapper.wait()
