"""Many files at once: ``mnistlab predict DIR`` on every core, answers streamed in input order.

Reading a photo is CPU work that holds the GIL most of the time (Pillow,
numpy and OpenCV release it only in parts), so threads gain little; the
files are shared out to forked worker processes instead, which inherit the
loaded model (no second load, its memory shared). Files go out in small
chunks, at most a few chunks per worker ahead of the one being printed, so
answers come back in the order given while memory stays bounded however
many files there are. A file that cannot be read is an error for that file
alone.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from mnistlab._cpus import usable_cpus
from mnistlab._processes import end_with_parent, hangup_ends_the_process
from mnistlab.errors import InputError, MnistlabError
from mnistlab.trust.predict import (
    ARRAY_SUFFIXES,
    FirstLook,
    Predictor,
    check_top,
    first_look,
    load_predictor,
    predict_file,
    settled,
)

__all__ = ["IMAGE_SUFFIXES", "expand_paths", "predict_files"]

# .jfif and .jpe are JPEGs too: a browser on Windows saves a JPEG from the web as .jfif.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# Files per task: a photo is a few ms and a task's round trip a fraction of one. A task's photos share one
# ``describe`` call: on 2,000 photos on 2 cores, one call a task read 13% more photos a second than one call a
# photo, and 32 files a task 6% more than 8. Fewer a task where there are few files: 4 tasks a worker at least.
MIN_CHUNK, MAX_CHUNK = 8, 32
AHEAD = 4  # chunks queued per worker beyond the one it works on

Answer = tuple[Path, dict | None, MnistlabError | None]  # (file, result, or the error that file gave)

_PREDICTOR: Predictor | None = None  # set before the workers fork: they inherit it
_OPTIONS: dict[str, Any] = {}


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the images and .npy/.csv files in it, by name.

    Files named directly are kept whatever their suffix (reading them says
    what is wrong); a folder contributes only its files (and links to files) of those suffixes, not hidden
    ones, not subfolders (it is not searched recursively), and one with none, or one that cannot be listed,
    is an ``InputError``.
    """
    readable = IMAGE_SUFFIXES + ARRAY_SUFFIXES
    out: list[Path] = []
    for path in paths:
        if not _is_dir(path):
            out.append(path)  # reading it says what is wrong with it, if anything
            continue
        try:
            found = sorted(
                p for p in path.iterdir() if not p.name.startswith(".") and p.suffix.lower() in readable and _listed(p)
            )
        except OSError as exc:  # a folder this user may not list, or one that went away
            raise InputError(
                f"Cannot list the folder {path} ({exc.strerror or exc}); check that you may read it, or name its files."
            ) from None
        if not found:
            raise InputError(
                f"{path} holds no image ({', '.join(IMAGE_SUFFIXES)}) and no .npy or .csv file; "
                "name the files, or a folder that holds some."
            )
        out += found
    return out


def _listed(path: Path) -> bool:
    """Whether a folder's image or array file is read: a file, or one the system will not look at (a link to a
    name too long, into a folder this user may not search): reading it says so, for that file alone, where
    ``is_file`` raised and the whole folder was refused."""
    try:
        return path.is_file()
    except OSError:
        return True


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; False where the system will not say (a name too long, a folder above it
    this user may not search): reading it as a file then says so, for that file alone."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _answer(path: Path, predictor: Any, options: dict[str, Any]) -> Answer:
    try:
        return path, predict_file(path, predictor, **options), None
    except MnistlabError as exc:
        return path, None, exc


def _portable(answer: Answer) -> Answer:
    """``answer`` with an error that may not survive pickling replaced by an ``InputError`` saying the same."""
    path, result, exc = answer
    if exc is not None:
        try:
            type(exc)(*exc.args)  # what unpickling it in the parent would do
        except Exception:  # an error class whose __init__ takes other arguments than its message
            exc = InputError(str(exc))
    return path, result, exc


def _start_worker(parent: int) -> None:
    """In each worker: Ctrl+C is the parent's to handle (it stops the pool), not a traceback per worker; SIGTERM
    ends the worker, as the pool means it to when it stops a broken pool's workers, where the CLI's handler the
    fork copied would raise SystemExit into a file's reading, be caught there and leave the worker waiting.

    And one OpenMP thread: GNU OpenMP's threads, started in the parent before the fork (scikit-learn's k-NN
    calibrating a model saved without its cut, or fitted in this process), do not exist in the worker, and its
    first parallel loop on more than one thread waits for them forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    hangup_ends_the_process()  # SIGHUP too, as SIGTERM
    threadpool_limits(1, user_api="openmp")
    end_with_parent(parent)


def _answers(paths: list[Path], predictor: Predictor, options: dict[str, Any]) -> list[Answer]:
    """The answers for a few files, in order, their photos' first looks classified in one ``describe`` call
    (``bench_predict.py``: 0.80 CPU-ms an image at batch 1, 0.51-0.53 at batch 64). The answers are
    ``predict_file``'s: the nets give an image the same floats in any batch."""
    if options["number"]:
        return [_answer(path, predictor, options) for path in paths]
    answers: dict[int, Answer] = {}
    looks: dict[int, FirstLook] = {}
    for i, path in enumerate(paths):
        if path.suffix.lower() in ARRAY_SUFFIXES:
            answers[i] = _answer(path, predictor, options)
            continue
        try:
            looks[i] = first_look(path)
        except MnistlabError as exc:
            answers[i] = path, None, exc
    if looks:
        firsts = predictor.describe(np.stack([seen.image for seen in looks.values()]), options["top"])
        for (i, seen), first in zip(looks.items(), firsts):
            try:
                answers[i] = paths[i], settled(predictor, seen, first, options["top"]), None
            except MnistlabError as exc:
                answers[i] = paths[i], None, exc
    return [answers[i] for i in range(len(paths))]


def _chunk(paths: list[Path]) -> list[Answer]:
    """Runs in a worker: the answers for a few files, with the predictor the parent loaded."""
    assert _PREDICTOR is not None  # set before the fork
    return [_portable(answer) for answer in _answers(paths, _PREDICTOR, _OPTIONS)]


def predict_files(
    paths: list[Path], model: Any = None, *, top: int = 3, number: bool = False, jobs: int | None = None
) -> Iterator[Answer]:
    """``(path, result, None)`` or ``(path, None, error)`` for each path, in order, as ``predict_file`` answers.

    ``jobs`` processes (default: every CPU) share the work when there are
    more files than one chunk; otherwise, or with ``jobs=1``, it runs here.
    """
    predictor = load_predictor(model)
    options = {"top": check_top(top), "number": number}
    jobs = min(jobs or usable_cpus(), -(-len(paths) // MIN_CHUNK))
    size = min(MAX_CHUNK, max(MIN_CHUNK, len(paths) // (4 * max(jobs, 1))))
    # One BLAS thread here and in the workers forked meanwhile: the scores' small matrix products cost
    # twice the CPU with OpenBLAS's threads spinning, and the files are the parallelism.
    # And one OpenCV thread: a 320-px photo is no work to share, only to spin on. The caller's count comes back
    # when the answers end (or the caller stops early), as the BLAS threads' does.
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
                for i in range(0, len(paths), size):
                    yield from _answers(paths[i : i + size], predictor, options)
            else:
                yield from _in_workers(paths, predictor, options, jobs, size)
    finally:
        cv2.setNumThreads(opencv_threads)


def _in_workers(
    paths: list[Path], predictor: Predictor, options: dict[str, Any], jobs: int, size: int
) -> Iterator[Answer]:
    """The answers from ``jobs`` forked processes, ``size`` files a task, a few tasks ahead of the one given back,
    in order."""
    global _PREDICTOR, _OPTIONS
    _PREDICTOR, _OPTIONS = predictor, options
    chunks = (paths[i : i + size] for i in range(0, len(paths), size))
    pending: deque[Future[list[Answer]]] = deque()
    context = multiprocessing.get_context("fork")
    taken = 0  # chunks answered: the files before ``paths[taken * size]``
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
        try:
            for chunk in chunks:
                pending.append(pool.submit(_chunk, chunk))
                if len(pending) >= jobs * (AHEAD + 1):
                    yield from pending.popleft().result()
                    taken += 1
            while pending:
                yield from pending.popleft().result()
                taken += 1
        except BrokenProcessPool:  # a worker killed (out of memory, kill -9) or crashed in a decoder's C code
            first = taken * size
            raise MnistlabError(
                "A process reading the files stopped abruptly (killed, out of memory, or crashed on a file) before "
                f"{paths[first]} (file {first + 1} of {len(paths)}) was answered; read the files from there again, "
                "with --jobs 1 to find one that crashes the reader."
            ) from None
        finally:
            _PREDICTOR, _OPTIONS = None, {}
            # The caller stopped early (or Ctrl+C, SIGTERM): what is queued is dropped by the pool's own thread.
            # Cancelled from here, while SIGTERM to the process group ended the workers too, the broken pool
            # failed to mark those futures and printed an InvalidStateError traceback.
            pool.shutdown(wait=True, cancel_futures=True)
