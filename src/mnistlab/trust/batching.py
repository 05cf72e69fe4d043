"""Micro-batching: the 28x28 images of concurrent requests answered in one ``Predictor.describe`` call.

One call costs two onnxruntime runs (classifier and detector) plus a few
matrix products whatever the batch size, so fifty requests that arrive
together should share one call, not make fifty. ``MicroBatcher`` collects
what callers submit from any thread: the first image opens a batch, which
is run once ``max_batch`` images are waiting or ``max_wait`` seconds after it
was opened, whichever comes first (the wait is bounded: a lone request pays
at most ``max_wait``). One background thread runs the batches, so while it
runs one, the next fills up; ``close`` ends it once the jobs submitted are
answered (an app's batcher goes with the app).

Answers are those of one-by-one calls: ``describe`` is run with ``top=10``
and each caller's ranking cut to its own ``top``, and the nets give the same
floats for an image whatever its batch (a deskewing net sums its image moments
in float64: ``models.cnn.net.deskew``). If a batch fails,
each request in it is run again alone, so a bad image fails only its own
request.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from mnistlab.errors import NotReadyError, ParameterError
from mnistlab.trust.predict import Predictor

__all__ = ["MicroBatcher", "BatchedPredictor", "batched", "SHUTTING_DOWN"]

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_WAIT = 0.002  # seconds: a few times the cost of one describe call, far below a request's
SHUTTING_DOWN = "The server is shutting down; send the request again in a few seconds."  # a closed batcher's 503


@dataclass
class _Job:
    images: np.ndarray  # (n, 28, 28) uint8
    top: int
    future: Future = field(default_factory=Future)
    waiter: asyncio.Future | None = None  # an event loop's caller (``answer``): settled in that loop


_Settled = tuple[asyncio.Future, list[dict] | None, Exception | None]  # a waiter, its result or its error


class MicroBatcher:
    """Runs ``describe(images, top)`` for many callers as one call; thread-safe.

    ``describe`` is a ``Predictor.describe``: (N, 28, 28) uint8 images and a
    ``top`` -> one result dict per image.
    """

    def __init__(
        self,
        describe: Callable[[np.ndarray, int], list[dict]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT,
    ):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ParameterError(
                "max_batch", f"{{param}} must be a whole number of images, 1 or more, got {max_batch!r}."
            )
        if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not 0 <= max_wait < math.inf:
            # checked here: in the batching thread a bad value would end it, and leave every caller waiting
            raise ParameterError("max_wait", f"{{param}} must be a number of seconds, 0 or more, got {max_wait!r}.")
        self.describe_all = describe
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._jobs: list[_Job] = []
        self._waiting = 0  # images in self._jobs
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False  # ``close``: no job is taken, and the thread ends once those it has are answered
        self.batches = 0  # batches run so far: how well requests were batched (images / batches)
        self.images = 0

    def submit(self, images: np.ndarray, top: int, *, waiter: asyncio.Future | None = None) -> _Job:
        """The job of ``describe(images, top)``, answered with the next batch: its ``future``, or ``waiter``
        (an asyncio future, settled in its own loop) when given."""
        images = np.asarray(images)
        job = _Job(images, top, waiter=waiter)
        with self._cond:
            if self._closed:  # a thread still reading a photo as the server stops: its request is not waiting
                raise NotReadyError(SHUTTING_DOWN, 2)
            if self._thread is None or not self._thread.is_alive():
                # Started lazily and again after a fork: a child process has none of its parent's threads.
                self._thread = threading.Thread(target=self._run_forever, name="micro-batcher", daemon=True)
                self._thread.start()
            self._jobs.append(job)
            self._waiting += max(1, images.size // 784)
            if len(self._jobs) == 1 or self._waiting >= self.max_batch:
                # The batch opens, or is full; in between, the batching thread sleeps out its wait undisturbed.
                self._cond.notify()
        return job

    def close(self) -> None:
        """End the batching thread once the jobs submitted so far are answered; later ones are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def __call__(self, images: np.ndarray, top: int) -> list[dict]:
        """``describe(images, top)``, batched with whatever other threads submit meanwhile."""
        return self.submit(images, top).future.result()

    async def answer(self, images: np.ndarray, top: int) -> list[dict]:
        """``describe(images, top)`` for a coroutine, batched; the event loop waits, no thread does.

        The batch's answers reach each event loop in one callback for all its
        callers, not one wake-up of the loop per request.
        """
        job = self.submit(images, top, waiter=asyncio.get_running_loop().create_future())
        assert job.waiter is not None
        return await job.waiter

    def _next_batch(self) -> list[_Job] | None:
        """Wait for a first job, then up to ``max_wait`` for the batch to fill; take every job waiting. None:
        closed, and every job answered."""
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if not self._jobs:
                return None
            deadline = time.monotonic() + self.max_wait
            while self._waiting < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            jobs, self._jobs, self._waiting = self._jobs, [], 0
            return jobs

    def _run_forever(self) -> None:
        while (batch := self._next_batch()) is not None:
            jobs = [job for job in batch if job.waiter is not None or job.future.set_running_or_notify_cancel()]
            if jobs:
                self._answer(jobs)

    def _answer(self, jobs: list[_Job]) -> None:
        """Answer ``jobs`` from one describe call; if it fails, each job from its own call."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = defaultdict(list)
        try:
            stacked = np.concatenate([np.asarray(job.images, np.uint8).reshape(-1, 28, 28) for job in jobs])
            results = self.describe_all(stacked, 10)
        except Exception:  # one bad image: find it by answering each request alone
            for job in jobs:
                try:
                    _deliver(job, self.describe_all(job.images, job.top), None, by_loop)
                except Exception as exc:  # delivered to the caller that submitted the image
                    _deliver(job, None, exc, by_loop)
        else:
            self.batches += 1
            self.images += len(stacked)
            start = 0
            for job in jobs:
                n = len(job.images.reshape(-1, 28, 28))
                _deliver(job, [{**r, "top": r["top"][: job.top]} for r in results[start : start + n]], None, by_loop)
                start += n
        _wake(by_loop)


def _deliver(
    job: _Job,
    result: list[dict] | None,
    error: Exception | None,
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]],
) -> None:
    """Settle a thread's job now; queue a coroutine's for its loop (``_wake``)."""
    if job.waiter is not None:
        by_loop[job.waiter.get_loop()].append((job.waiter, result, error))
    elif error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)


def _wake(by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]]) -> None:
    """One callback per event loop settles all of its waiters (a loop that has closed is skipped)."""
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_waiters, settled)
        except RuntimeError:  # the loop is closed: its callers are gone
            pass


def _settle_waiters(settled: list[_Settled]) -> None:
    """In the waiters' loop: each result or exception, unless its caller stopped waiting (cancelled)."""
    for waiter, result, error in settled:
        if waiter.done():
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)


@dataclass(frozen=True)
class BatchedPredictor(Predictor):
    """A ``Predictor`` whose ``describe`` goes through a shared ``MicroBatcher``."""

    batcher: MicroBatcher | None = None

    def describe(self, images: np.ndarray, top: int) -> list[dict]:
        assert self.batcher is not None  # set by ``batched``
        return self.batcher(images, top)


def batched(
    predictor: Predictor, *, max_batch: int = DEFAULT_MAX_BATCH, max_wait: float = DEFAULT_MAX_WAIT
) -> BatchedPredictor:
    """``predictor`` answering through a ``MicroBatcher`` (pass the result wherever a model is taken)."""
    base = Predictor(predictor.classify, predictor.card, predictor.reader, predictor.cut)
    batcher = MicroBatcher(base.describe, max_batch=max_batch, max_wait=max_wait)
    return BatchedPredictor(base.classify, base.card, base.reader, base.cut, batcher)
