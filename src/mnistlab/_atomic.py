"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader (or a crash) never sees half a file: either the old content or the
new one. Used for every cache, model, figure and report mnistlab writes.
``locked_folder`` makes writers of several files into one folder (a model's
weights and card) take turns.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_writer", "atomic_write_bytes", "locked_folder"]


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600 files; outputs get ordinary permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


@contextmanager
def locked_folder(folder: str | os.PathLike) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself (no lock file to leave behind) while the block runs.

    Two processes saving a model into one folder then write one after the
    other, so its weights and its card come from the same save. Where there is
    no ``flock`` (not POSIX), nothing is locked.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
