"""A classifier's probability cut, calibrated on digits it never trained on.

``mnistlab train`` calls ``probability_cut_for`` with the run's own test set
and stores the result in the model card, so answering later reads a number
instead of a data set. Models saved before cards carried it, and estimators
handed over from Python unsaved, are calibrated here on the MNIST test set
(``calibrate_on_mnist``) once: the cut of a saved model is cached in the user
cache, keyed by its weights' sha256 and the reader's thresholds (a cut cached
under an older measure is calibrated again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab.data.cache import cache_root
from mnistlab.data.load import load_mnist
from mnistlab.trust.reader import Reader
from mnistlab.trust.thresholds import MEASURE, TOTAL_RATE, ProbabilityCut, calibrate_probability

__all__ = ["halves", "probability_cut_for", "calibrate_on_mnist", "mnist_test_halves"]

Classify = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 -> (N, 10) probabilities


def halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of ``range(n)``: (calibration, evaluation) indices."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def probability_cut_for(classify: Classify, reader: Reader, images: np.ndarray, source: str) -> ProbabilityCut:
    """The cut for ``classify`` from (N, 28, 28) uint8 held-out digits (thresholds from one half, rate from the other)."""
    images = np.asarray(images, np.uint8).reshape(-1, 28, 28)
    calibration, evaluation = halves(len(images))
    method = (
        f"{source} ({len(images)} digits) split at random (seed 0): the cut flags {TOTAL_RATE:.1%} of {len(calibration)} "
        f"digits in all, with the reader's not-a-digit flags; the flag rate is measured on the other {len(evaluation)}"
    )
    return calibrate_probability(
        reader.thresholds, reader.scores(images), classify(images), calibration, evaluation, method
    )


def mnist_test_halves() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images (10000, 28, 28), labels, calibration indices, evaluation indices) of the MNIST test set."""
    data = load_mnist("mnist")
    n = data.details["n_train"]
    images, labels = np.asarray(data.images[n:]), np.asarray(data.target[n:])
    return (images, labels, *halves(len(images)))


def _cache_path(weights_sha256: str, reader: Reader):
    reader_key = hashlib.sha256(json.dumps(reader.card["files"], sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "calibration" / f"cut-{weights_sha256}-{reader_key}.json"


def calibrate_on_mnist(classify: Classify, reader: Reader, weights_sha256: str | None = None) -> ProbabilityCut:
    """The cut for a classifier whose card carries none, from the MNIST test set (cached per weights)."""
    path = _cache_path(weights_sha256, reader) if weights_sha256 else None
    if path is not None:
        try:
            cached = ProbabilityCut(**json.loads(path.read_text()))
            if cached.measure == MEASURE:
                return cached
            # cached before cuts weighed the probability by the digit's shape: calibrate again below
        except (OSError, ValueError, TypeError):
            pass  # not cached yet, or damaged: calibrate below
    images = mnist_test_halves()[0]
    cut = probability_cut_for(classify, reader, images, "the MNIST test set")
    if path is not None:
        try:
            atomic_write_bytes(path, json.dumps(cut.to_json(), indent=2).encode())
        except OSError:
            pass  # a read-only cache only costs time
    return cut
