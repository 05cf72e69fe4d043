"""Knowing when a prediction should not be trusted, calibrated on held-out digits.

A classifier answers every input with some digit, often at 99%. Two kinds of
evidence decide whether an answer is *confident*:

* Does the 28x28 image look like an MNIST digit at all? Five scores, computed by
  ``digit_scores``, none of which involve the classifier: the reconstruction
  error of the image in a 50-component PCA of 20,000 MNIST training digits (every third),
  the mean distance to its 5 nearest training digits in that PCA space (both
  relative to the image's norm), the ink fraction, the number of separate ink
  blobs, and the stroke width.
* Is the classifier itself sure? Its top probability.

No threshold is set by hand. The MNIST *test* set is split at random (seed 0)
into a calibration half and an evaluation half (5,000 digits each). On the
calibration half, every score gets its threshold at the same quantile ``q``
(both tails for ink fraction and stroke width, the upper tail for the rest),
with ``q`` found by bisection so that 0.5% of the digits are flagged; then the
probability threshold is chosen so that 0.9% are flagged in all. The evaluation
half, which took no part in choosing anything, gives the honest flag rate that
is stored alongside. The PCA basis and projected training digits (model-independent) are
cached as safetensors in the user cache, keyed by the training data's sha256;
the thresholds of a saved model as JSON keyed by its weights' sha256.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "SCORES",
    "DigitSpace",
    "Calibration",
    "digit_space",
    "digit_scores",
    "calibrate",
    "calibrate_model",
    "assess",
    "held_out_halves",
    "load_calibration",
    "save_calibration",
]

SCORES = ("reconstruction_error", "neighbour_distance", "ink_fraction", "blobs", "stroke_width")
_TWO_SIDED = {"ink_fraction", "stroke_width"}
_REASONS = {
    "blobs": "looks like noise",
    "reconstruction_error": "not digit-shaped",
    "neighbour_distance": "not digit-shaped",
    "ink_fraction": "not digit-shaped",
    "stroke_width": "not digit-shaped",
}
_COMPONENTS = 50
_VERSION = 1
_OOD_RATE, _TOTAL_RATE = 0.005, 0.009
_EIGHT = np.ones((3, 3), bool)


@dataclass
class DigitSpace:
    """PCA of the MNIST training digits (pixels in [0, 1]) and the digits projected into it."""

    mean: np.ndarray  # (784,)
    components: np.ndarray  # (k, 784), orthonormal rows
    reference: np.ndarray  # (20000, k): every third training digit in PCA coordinates


@dataclass
class Calibration:
    lower: dict  # score -> threshold below which an image is flagged
    upper: dict  # score -> threshold above which an image is flagged
    min_probability: float
    quantile: float
    method: str
    flag_rate_calibration: float
    flag_rate_evaluation: float
    version: int = _VERSION


def _cache_dir() -> Path:
    from ._datasets import cache_root

    return cache_root() / "calibration"


def fit_digit_space(images: np.ndarray, k: int = _COMPONENTS) -> DigitSpace:
    # Every third training digit (20,000) pins the top components and serves as neighbours.
    x = images[::3].reshape(-1, 784).astype(np.float64) / 255.0
    mean = x.mean(0)
    _, vecs = np.linalg.eigh(np.cov(x - mean, rowvar=False))  # ascending: the last k are the top components
    components = vecs[:, ::-1][:, :k].T.copy()
    reference = (x - mean) @ components.T
    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    return DigitSpace(f32(mean), f32(components), f32(reference))


_SPACES: dict[Path, DigitSpace] = {}


def digit_space() -> DigitSpace:
    """The digit space of the MNIST training set: from memory, the user cache, or fitted (seconds) and cached."""
    from safetensors.numpy import load, save

    from ._atomic import atomic_write_bytes
    from ._load import load_mnist

    data = load_mnist("mnist")
    path = _cache_dir() / f"digit-space-{data.details['data_sha256'][:16]}-v{_VERSION}.safetensors"
    if path in _SPACES:
        return _SPACES[path]
    space = None
    if path.is_file():
        try:
            space = DigitSpace(**load(path.read_bytes()))
        except Exception:
            space = None  # a damaged cache file is rebuilt below
    if space is None:
        n = data.details["n_train"]
        space = fit_digit_space(data.images[:n])
        meta = {"source": "MNIST training set", "components": str(_COMPONENTS)}
        atomic_write_bytes(path, save(asdict(space), metadata=meta))
    _SPACES[path] = space
    return space


_REF_SQ: dict[int, np.ndarray] = {}  # id(space) -> squared norms of the reference digits


def digit_scores(space: DigitSpace, images: np.ndarray) -> np.ndarray:
    """(N, len(SCORES)) scores of (N, 28, 28) uint8 images; large means unlike a digit."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    centred = x - space.mean
    z = centred @ space.components.T  # (N, k)
    residual = centred - z @ space.components
    recon = (residual**2).sum(1) / np.maximum((x**2).sum(1), 1e-6)
    # Mean distance to the 5 nearest training digits in PCA space, relative to the
    # image's own norm (a faint small blob is not "near" just because it is small).
    if id(space) not in _REF_SQ:
        _REF_SQ.clear()
        _REF_SQ[id(space)] = (space.reference**2).sum(1)
    ref_sq = _REF_SQ[id(space)]
    near = np.empty(len(x), np.float32)
    for start in range(0, len(x), 1000):  # (1000, 20000) distance blocks
        zb = z[start : start + 1000]
        d2 = (zb**2).sum(1)[:, None] - 2 * zb @ space.reference.T + ref_sq[None]
        near[start : start + 1000] = np.sqrt(np.maximum(np.partition(d2, 5, axis=1)[:, :5], 0)).mean(1)
    near /= np.maximum(np.sqrt((x**2).sum(1)), 1e-3)
    blobs, width = np.zeros(len(x)), np.zeros(len(x))
    for i, img in enumerate(images.reshape(-1, 28, 28)):
        labels, n = ndimage.label(img > 76, structure=_EIGHT)
        areas = np.bincount(labels.ravel())[1:]
        blobs[i] = (areas >= 2).sum()
        core = img > 127
        width[i] = 2 * ndimage.distance_transform_edt(core)[core].mean() if core.any() else 0.0
    return np.stack([recon, near, x.mean(1), blobs, width], axis=1)


def _flags(scores: np.ndarray, lower: dict, upper: dict) -> np.ndarray:
    out = np.zeros(len(scores), bool)
    for j, name in enumerate(SCORES):
        if name in upper:
            out |= scores[:, j] > upper[name]
        if name in lower:
            out |= scores[:, j] < lower[name]
    return out


def _thresholds(scores: np.ndarray, q: float) -> tuple[dict, dict]:
    lower, upper = {}, {}
    for j, name in enumerate(SCORES):
        if name in _TWO_SIDED:
            lower[name] = float(np.quantile(scores[:, j], q / 2))
            upper[name] = float(np.quantile(scores[:, j], 1 - q / 2))
        else:
            upper[name] = float(np.quantile(scores[:, j], 1 - q))
    return lower, upper


def calibrate(scores: np.ndarray, proba: np.ndarray, eval_scores: np.ndarray, eval_proba: np.ndarray, method: str) -> Calibration:
    """Thresholds from the calibration half (``scores``, ``proba``: (N, 10)); rates measured on both halves."""
    lo, hi = 0.0, 0.05
    for _ in range(40):  # bisection: the flag rate grows with q
        q = (lo + hi) / 2
        if _flags(scores, *_thresholds(scores, q)).mean() > _OOD_RATE:
            hi = q
        else:
            lo = q
    lower, upper = _thresholds(scores, lo)
    ood = _flags(scores, lower, upper)
    top = proba.max(1)
    # Flag the least sure of the remaining digits until _TOTAL_RATE are flagged.
    extra = max(0, int(round(_TOTAL_RATE * len(top))) - int(ood.sum()))
    kept = np.sort(top[~ood])
    min_probability = float(kept[extra - 1]) if extra > 0 else 0.0
    rate = lambda s, p: float((_flags(s, lower, upper) | (p.max(1) <= min_probability)).mean())  # noqa: E731
    return Calibration(lower, upper, min_probability, lo, method, rate(scores, proba), rate(eval_scores, eval_proba))


def assess(cal: Calibration, scores: np.ndarray, probability: float, ink: bool) -> str | None:
    """The reason not to trust one prediction, or None when it is confident."""
    if not ink:
        return "no ink found"
    for name in sorted(SCORES, key=lambda n: n != "blobs"):  # "looks like noise" says most, so first
        j = SCORES.index(name)
        if scores[j] > cal.upper.get(name, np.inf) or scores[j] < cal.lower.get(name, -np.inf):
            return _REASONS[name]
    if probability <= cal.min_probability:
        return f"low probability ({probability:.2f})"
    return None


def held_out_halves() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (10000, 28, 28), calibration indices, evaluation indices) of the MNIST test set."""
    from ._load import load_mnist

    data = load_mnist("mnist")
    test = np.asarray(data.images[data.details["n_train"] :])
    order = np.random.default_rng(0).permutation(len(test))
    half = len(test) // 2
    return test, order[:half], order[half:]


_TEST_SCORES: dict[int, np.ndarray] = {}  # id(space) -> scores of the 10,000 test digits


def calibrate_model(predict_proba, space: DigitSpace) -> Calibration:
    """Calibrate a model given its ``predict_proba`` on (N, 784) uint8 rows."""
    test, cal_idx, eval_idx = held_out_halves()
    if id(space) not in _TEST_SCORES:
        _TEST_SCORES.clear()
        _TEST_SCORES[id(space)] = digit_scores(space, test)
    scores = _TEST_SCORES[id(space)]
    proba = np.asarray(predict_proba(test.reshape(len(test), -1)), np.float64)
    method = (
        "MNIST test set split at random (seed 0): thresholds from 5000 calibration digits, "
        "flag rate measured on the other 5000"
    )
    return calibrate(scores[cal_idx], proba[cal_idx], scores[eval_idx], proba[eval_idx], method)


def load_calibration(weights_sha256: str) -> Calibration | None:
    path = _cache_dir() / f"model-{weights_sha256}.json"
    try:
        raw = json.loads(path.read_text())
        cal = Calibration(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return cal if cal.version == _VERSION else None


def save_calibration(weights_sha256: str, cal: Calibration) -> None:
    from ._atomic import atomic_write_bytes

    path = _cache_dir() / f"model-{weights_sha256}.json"
    atomic_write_bytes(path, (json.dumps(asdict(cal), indent=2, sort_keys=True) + "\n").encode())
