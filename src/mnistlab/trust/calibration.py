"""A classifier's probability cut, calibrated on digits it never trained on.

``mnistlab train`` calls ``probability_cut_for`` with the run's own test set
and stores the result in the model card, so answering later reads a number
instead of a data set. Models saved before cards carried it (and by
``compare``), and estimators handed over from Python unsaved, are calibrated
here on the MNIST test set (``calibrate_on_mnist``; a model fitted on a random
split of MNIST, on its own split's test set) once: the cut of a saved model is cached in the user
cache, keyed by its weights' sha256 and the reader's thresholds, with a
checksum of its own (a cut edited, damaged or cached under an older measure is
calibrated again). The reader's scores of a held-out set, the same for every
model calibrated on it, are cached too (``held_out_scores``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab._version import __version__
from mnistlab.data.cache import cache_root
from mnistlab.data.load import load_mnist, load_split
from mnistlab.errors import DatasetError
from mnistlab.models.folder import read_regular
from mnistlab.trust.reader import Reader
from mnistlab.trust.scores import SCORES
from mnistlab.trust.thresholds import MEASURE, TOTAL_RATE, ProbabilityCut, calibrate_probability

__all__ = ["halves", "held_out_scores", "probability_cut_for", "calibrate_on_mnist", "mnist_test_halves"]

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
        reader.thresholds, held_out_scores(reader, images), classify(images), calibration, evaluation, method
    )


# Sets smaller than this are scored, not cached: a few images cost less than a file.
MIN_CACHED_IMAGES = 1000


def held_out_scores(reader: Reader, images: np.ndarray) -> np.ndarray:
    """``reader.scores(images)``, cached in the user cache for a set of ``MIN_CACHED_IMAGES`` or more.

    Every model trained on one test set is calibrated on the same images, whose scores depend on
    the reader alone: 1-2 CPU-seconds for MNIST's 10,000 test digits, once per set instead of once per model.
    The file is keyed by the images' bytes, the reader's files and this version of mnistlab (which computes the
    scores), and carries a checksum of its key and values: a damaged or edited file is scored again.
    """
    if len(images) < MIN_CACHED_IMAGES or not reader.card.get("files"):  # a reader being built has no files yet
        return reader.scores(images)
    key = _scores_key(reader, images)
    size = len(images) * len(SCORES) * 8
    try:
        path = cache_root() / "calibration" / f"scores-{key.hexdigest()}.f64"
    except DatasetError:  # no cache folder to be had (HOME unset, XDG_CACHE_HOME unusable): scored, not cached
        return reader.scores(images)
    try:
        data = read_regular(path, size + 64 + 1)
    except OSError:
        data = None
    if (
        data is not None
        and len(data) == size + 64
        and _scores_sha256(key, data[64:]) == data[:64].decode("ascii", "replace")
    ):
        return np.frombuffer(data[64:], np.float64).reshape(len(images), len(SCORES)).copy()
    scores = np.ascontiguousarray(reader.scores(images), np.float64)
    try:
        atomic_write_bytes(path, _scores_sha256(key, scores.tobytes()).encode() + scores.tobytes())
    except OSError:
        pass  # a read-only cache only costs time
    return scores


def _scores_key(reader: Reader, images: np.ndarray):
    """The hash (a hashlib object) of what the scores of ``images`` depend on: the images, the reader's files and
    the code that computes them."""
    key = hashlib.sha256(json.dumps([__version__, SCORES, reader.card["files"]], sort_keys=True).encode())
    key.update(np.ascontiguousarray(images, np.uint8).tobytes())
    return key


def _scores_sha256(key, values: bytes) -> str:
    """The checksum a cached file of scores carries (64 hex digits, its first bytes): of its key and its values."""
    digest = key.copy()
    digest.update(values)
    return digest.hexdigest()


def mnist_test_halves() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images (10000, 28, 28), labels, calibration indices, evaluation indices) of the MNIST test set."""
    data = load_mnist("mnist")
    n = data.details["n_train"]
    images, labels = np.asarray(data.images[n:]), np.asarray(data.target[n:])
    return (images, labels, *halves(len(images)))


# A cached cut is a few hundred bytes; a larger file in its place is not one, and is not read past this.
MAX_CACHED_BYTES = 64 * 1024


def _cache_path(weights_sha256: str, reader: Reader, own_split: dict | None = None):
    """``own_split``: the random split a model's test set came from (keyed apart from the MNIST test set's cut)."""
    key: object = reader.card["files"] if own_split is None else [reader.card["files"], own_split]
    reader_key = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "calibration" / f"cut-{weights_sha256}-{reader_key}.json"


def _cut_sha256(cut: dict, path: Path) -> str:
    """The checksum a cached cut carries: of its fields and its file's name, which names the model's weights and
    the reader (a cut copied to another model's file fails it too). It tells damage, not forgery."""
    return hashlib.sha256(json.dumps([path.name, cut], sort_keys=True).encode()).hexdigest()


def _cached_cut(path: Path) -> ProbabilityCut | None:
    """The cut cached in ``path``; None where there is none, or it fails its checksum (edited, damaged, or cached
    before cuts carried one), holds no cut or one of an older measure: each is calibrated again. A named pipe or
    a device in its place is not read (a pipe blocked the answer forever), a large file not past
    ``MAX_CACHED_BYTES``."""
    try:
        text = read_regular(path, MAX_CACHED_BYTES)
        saved = json.loads(text) if text is not None else {}
        fields = {k: v for k, v in saved.items() if k != "cut_sha256"}
        cut = ProbabilityCut(**fields) if saved.get("cut_sha256") == _cut_sha256(fields, path) else None
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):  # unreadable, or no cut
        return None
    # A cut cached before cuts weighed the probability by the digit's shape is calibrated again.
    return cut if cut is not None and cut.measure == MEASURE else None


def calibrate_on_mnist(
    classify: Classify, reader: Reader, weights_sha256: str | None = None, card: dict | None = None
) -> ProbabilityCut:
    """The cut for a classifier whose card carries none, from the MNIST test set (cached per weights); for a
    ``card`` of a model fitted on a random split of MNIST (``compare --split random``), whose training images
    hold most of that test set, from its own split's test set, which it was not fitted on."""
    own = _own_split(card)
    path = _cache_path(weights_sha256, reader, own) if weights_sha256 else None
    cached = _cached_cut(path) if path is not None else None
    if cached is not None:
        return cached
    if own is None:
        cut = probability_cut_for(classify, reader, mnist_test_halves()[0], "the MNIST test set")
    else:
        images = load_split(split="random", bunch=load_mnist("mnist"), **own)[1]
        source = f"the model's own test set (MNIST split at random, seed {own['seed']})"
        cut = probability_cut_for(classify, reader, images, source)
    if path is not None:
        fields = cut.to_json()
        try:
            atomic_write_bytes(path, json.dumps({**fields, "cut_sha256": _cut_sha256(fields, path)}, indent=2).encode())
        except OSError:
            pass  # a read-only cache only costs time
    return cut


def _own_split(card: dict | None) -> dict | None:
    """The random split of MNIST a model's card says it was fitted and tested on (seed, test_size); None for the
    official split, whose test set the model never saw, and for other data."""
    if card is None or card.get("dataset") != "mnist" or card.get("split") != "random":
        return None
    return {"seed": card.get("seed", 42), "test_size": card.get("test_size")}
