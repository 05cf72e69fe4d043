"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader (or a crash) never sees half a file: either the old content or the
new one. Used for every cache, model, figure and report mnistlab writes. The
temp file is locked while it is written, so the ones a killed writer left
(SIGKILL, a power cut: 55 MB for MNIST's image cache) are told from a live
writer's and removed by the next write of the same file.
``atomic_write_together`` writes files that must agree (weights and the card
holding their checksum) so that a crash leaves the old set. ``locked_folder`` makes writers of several files into one folder (a model's
weights and card) take turns.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_together",
    "folders_made",
    "locked_folder",
    "locked_where_possible",
    "locked_temp",
    "remove_leftovers",
    "ordinary_mode",
    "hidden_folder",
]

_NAME_MAX = 255  # the bytes of a file's name: Linux's file systems, macOS's, Windows' (UTF-16 units)


def _umask() -> int:
    """This process's umask, read where the system tells it (Linux: ``/proc/self/status``) without setting it: set
    to read it back, it is, for that instant, not the mask of a file another thread makes (``serve``'s)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_mode() -> int:
    """The permissions ``open`` gives a new file, ``0o666`` less the umask (``0o644`` under the usual ``022``):
    mkstemp's ``0o600`` hid outputs from the group, and a fixed ``0o644`` showed them to every user where the umask
    (``077``) says private, or kept them from a group that ``002`` lets write."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block succeeds (``mode``: its permissions, by
    default a new file's, ``ordinary_mode``)."""
    path = Path(path)
    with folders_made(path.parent):
        remove_leftovers(path, ".tmp")
        fd, tmp = locked_temp(path, ".tmp")
        try:
            if mode is not None:  # locked_temp gave it a new file's
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
                os.replace(tmp, path)  # still open, so locked: no other writer takes it for a leftover
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def folders_made(folder: Path) -> Iterator[None]:
    """``folder`` made with its missing parents for the block, and those it made removed again (if empty) when the
    block fails: a write that a full disk refused left ``show --out new/a.png``'s ``new`` behind, empty."""
    made = []
    above = folder
    while not os.path.lexists(above) and above != above.parent:
        made.append(above)
        above = above.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        for empty in made:  # the deepest first
            with contextlib.suppress(OSError):
                empty.rmdir()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_together(folder: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``folder``: all of them, or (an error, Ctrl+C) none.

    For files that must agree (a model's weights and the card holding their
    sha256). Written and replaced one after another, a save stopped while the
    card was written and synced left new weights beside the old card, which
    then refused them: the old model was lost (4 in 10 Ctrl+Cs or kills during
    a save did). Here all are written and synced first, then renamed in the
    order given, the files they replace kept by a second link meanwhile: an
    exception between two renames puts those files back. A rename then frees
    nothing (one that freed a file's blocks took 4 ms on ext4, against 10
    microseconds), so that only a process killed outright in that moment
    still leaves a mix. A killed write's temporary files, and its second links,
    are removed by the next write of the same names (``remove_leftovers``):
    until then each is held open and locked. Writers of one folder at once
    would mix their files: callers hold ``locked_folder``.
    """
    folder = Path(folder)
    ready: list[tuple[str, str]] = []  # (temporary file, final name)
    kept: dict[str, str | None] = {}  # final name -> a second link of the file it replaces ("": none there)
    with folders_made(folder), contextlib.ExitStack() as held:  # each temporary file and link open, so locked
        for name in files:
            remove_leftovers(folder / name, ".tmp")
        try:
            for name, data in files.items():
                fd, tmp = locked_temp(folder / name, ".tmp")
                ready.append((tmp, name))
                f = held.enter_context(os.fdopen(fd, "wb"))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                kept[name] = _second_link(folder / name, tmp, held)
            _replace_all(folder, ready, kept)
        finally:
            for leftover in [tmp for tmp, _ in ready] + [link for link in kept.values() if link]:
                Path(leftover).unlink(missing_ok=True)


def _replace_all(folder: Path, ready: list[tuple[str, str]], kept: dict[str, str | None]) -> None:
    """Rename each temporary file of ``ready`` to its name; on an exception, even one raised right after a
    rename returned, put back the files those done replaced (from ``kept``)."""
    try:
        for tmp, name in ready:
            os.replace(tmp, folder / name)
    except BaseException:
        for tmp, name in reversed(ready):
            if os.path.lexists(tmp):  # not renamed yet
                continue
            link = kept[name]
            with contextlib.suppress(OSError):  # put back all it can; the error that stopped the write goes on
                if link:
                    os.replace(link, folder / name)
                elif link == "":  # there was no such file: a folder without a model gets none of the new one
                    (folder / name).unlink(missing_ok=True)
        raise


def _second_link(path: Path, beside: str, held: contextlib.ExitStack) -> str | None:
    """A hard link to ``path`` named after the temporary file ``beside``, open and share-locked in ``held`` (so
    that ``remove_leftovers`` takes it for a live writer's); "" where there is no such file, None where it cannot
    be linked (a file system without hard links)."""
    link = beside[: -len(".tmp")] + ".old.tmp"
    try:
        os.link(path, link, follow_symlinks=False)
    except FileNotFoundError:
        return ""
    except OSError:
        return None
    f = held.enter_context(open(link, "rb"))  # noqa: SIM115  # closed with the others, after the renames
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
    return link


@contextmanager
def locked_folder(folder: str | os.PathLike, *, shared: bool = False) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself (no lock file to leave behind) while the block runs.

    Two processes saving a model into one folder then write one after the
    other, so its weights and its card come from the same save. ``shared``: a
    reader's lock, which waits for a writer's (a load reading a save's card
    beside the weights it replaced) and lets other readers in; a folder a reader
    cannot open or lock is read unlocked, for it to say what is wrong. Where
    there is no ``flock`` (not POSIX), nothing is locked.
    """
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except (OSError, TypeError, ValueError):
        if not shared:
            raise
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:
            if not shared:
                raise
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def locked_where_possible(folder: str | os.PathLike) -> Iterator[None]:
    """``locked_folder(folder)`` while the block runs, or no lock where it cannot be taken (a filesystem without
    locks, ENOLCK): what is written there is written unlocked, as it was before it was locked anywhere."""
    with contextlib.ExitStack() as held:
        with contextlib.suppress(OSError):
            held.enter_context(locked_folder(folder))
        yield


def _temp_prefix(final: Path, suffix: str) -> str:
    """``.<name>.``, the start of ``final``'s temp files; for a name too long to take it within the 255 bytes a
    file's name may have (its temp file and that file's second link ``.old``: 8 random characters and 4 more),
    the name cut, with 8 hex digits of its sha256 (a name of 250 bytes, which may be written, was refused as a
    temp file's "File name too long")."""
    room = _NAME_MAX - 8 - len(".old") - len(os.fsencode(suffix))
    prefix = f".{final.name}."
    if len(os.fsencode(prefix)) <= room:
        return prefix
    digest = hashlib.sha256(os.fsencode(final.name)).hexdigest()[:8]
    cut = final.name
    while len(os.fsencode(f".{cut}~{digest}.")) > room:
        cut = cut[:-1]
    return f".{cut}~{digest}."


def locked_temp(final: Path, suffix: str) -> tuple[int, str]:
    """A new temp file ``.<name>.XXXX<suffix>`` beside ``final`` (``_temp_prefix``), locked for as long as it is
    open.

    The lock tells a live writer's file from one a killed writer left, which
    ``remove_leftovers`` may then remove.
    """
    while True:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=_temp_prefix(final, suffix), suffix=suffix)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            os.fchmod(fd, ordinary_mode())  # mkstemp makes 0600 files; what mnistlab writes gets a new file's
            return fd, tmp
        os.close(fd)  # removed as a leftover in the instant before it was locked: take another


def remove_leftovers(final: Path, suffix: str) -> None:
    """Remove the temp files of ``final`` (``locked_temp``'s, ending in ``suffix``) that no live writer holds."""
    if fcntl is None:  # without locks a live writer's file cannot be told from a dead one's
        return
    for leftover in final.parent.glob(f"{glob.escape(_temp_prefix(final, suffix))}*{suffix}"):
        try:
            fd = os.open(leftover, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe would block a plain open
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            leftover.unlink()
        except OSError:
            pass  # a live writer's (locked), or a folder that cannot be written: left as it is
        finally:
            os.close(fd)


@contextmanager
def hidden_folder(parent: Path, prefix: str) -> Iterator[str]:
    """A new folder ``<prefix>XXXX`` in ``parent`` for the block (figures drawn on the disk they go to), locked while
    it is used, then removed. Those a process killed outright left (SIGKILL, a power cut: figures in a model's or a
    report's folder for good), which no live one holds, are removed first."""
    _remove_dead_folders(parent, prefix)
    while True:
        folder = tempfile.mkdtemp(dir=parent, prefix=prefix)
        fd = os.open(folder, os.O_RDONLY)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)  # removed as a leftover in the instant before it was locked: take another
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)  # releases the lock


def _remove_dead_folders(parent: Path, prefix: str) -> None:
    """Remove the ``hidden_folder``s in ``parent`` that no live process holds (a link of that name is left)."""
    if fcntl is None:  # without locks a live process's folder cannot be told from a dead one's
        return
    for leftover in parent.glob(f"{glob.escape(prefix)}*"):
        try:
            fd = os.open(leftover, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(leftover)
        except OSError:
            pass  # a live process's (locked), or one that cannot be removed: left as it is
        finally:
            os.close(fd)
