"""Running an onnxruntime session on a large batch (numpy and onnxruntime only: the serving path imports it)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

__all__ = ["CHUNK", "MIN_PART", "cpu_session", "run_in_chunks", "single_thread_session"]

# Images per session run. A batch's activations grow with it (the first stage of the
# standard net holds N x 32 x 28 x 28 floats: 100 MB at N = 1000) and spill out of the
# caches; runs of about 128 images kept them warm, 2 threads: 22,800 against 19,100
# images/s at batch 1000 on the 2-core benchmark machine.
CHUNK = 128
# Images a part at least when parts run side by side: a smaller batch runs faster whole, on onnxruntime's own
# threads (the ``cnn`` net, 2 cores: one image 0.09 against 0.15 ms, 16 images 1.10 against 1.25 ms; 32 images
# 2.83 against 2.37 ms side by side).
MIN_PART = 16

# Thread pools for running parts of a batch side by side, by size; made in the process that uses them (a pool
# made before a fork has no threads in the child).
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def cpu_session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU session whose every run uses ``threads`` threads (``single_thread_session``: one)."""
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads
    settings.inter_op_num_threads = 1
    return ort.InferenceSession(model, settings, providers=["CPUExecutionProvider"])


def single_thread_session(model: bytes) -> ort.InferenceSession:
    """A CPU session whose every run uses one thread: ``run_in_chunks`` runs its parts side by side instead.

    Parts of a batch on separate cores beat one run spread over them: each
    convolution of a small batch is too short for onnxruntime's threads to share
    well. At batch 1000 on 2 cores, the ``cnn`` recipe's net ran 14,400 against
    11,800 images/s, with int8 convolutions 26,400 against 17,800
    (benchmarks/RESULTS.md, "int8 convolutions").
    """
    return cpu_session(model, 1)


def run_in_chunks(
    one: ort.InferenceSession,
    name: str,
    x: np.ndarray,
    threads: int = 1,
    whole: ort.InferenceSession | None = None,
) -> np.ndarray:
    """The first output for the batch ``x`` (N, ...) of the session ``one``, run ``CHUNK`` images or so at a
    time (near-equal parts, ``np.array_split``: no short run left at the end), ``threads`` parts at once (a
    session runs concurrently from several threads; give ``one`` one thread, ``single_thread_session``).
    A batch of fewer than ``MIN_PART`` images a thread runs in one run of ``whole`` (a session on ``threads``
    threads), when given."""
    if whole is not None and threads > 1 and len(x) < threads * MIN_PART:
        return whole.run(None, {name: x})[0]
    parts = max(-(-len(x) // CHUNK), min(threads, len(x) // MIN_PART))
    if parts <= 1:
        return one.run(None, {name: x})[0]
    pieces = [np.ascontiguousarray(part) for part in np.array_split(x, parts)]
    if threads <= 1:
        return np.concatenate([one.run(None, {name: piece})[0] for piece in pieces])
    with _POOLS_LOCK:  # two first calls at once make one pool, not one each
        pool = _POOLS.get((os.getpid(), threads))
        if pool is None:
            pool = _POOLS[os.getpid(), threads] = ThreadPoolExecutor(threads, thread_name_prefix="onnx-part")
    return np.concatenate(list(pool.map(lambda piece: one.run(None, {name: piece})[0], pieces)))
