"""Predict handwritten digits and numbers from images, arrays and files.

``predict_image`` and ``read_number`` take a photo, scan or canvas drawing
(anything ``to_mnist`` reads), ``predict_array`` an MNIST-shaped array or a
``.npy``/``.csv`` file holding one. Every answer says whether it is
``confident``, and if not, why (see ``_calibration``). ``model`` is a fitted
estimator, a model directory written by ``mnistlab train``, a ``Predictor``
from ``load_predictor``, or None for the best model saved on this machine.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _calibration as calib
from ._errors import InputError, ModelFileError
from ._handwriting import segment_digits, to_mnist

__all__ = [
    "Predictor",
    "load_predictor",
    "predict_image",
    "predict_array",
    "read_number",
    "predict_file",
    "to_json",
    "ARRAY_SUFFIXES",
]

ARRAY_SUFFIXES = (".npy", ".csv")


@dataclass
class Predictor:
    """A fitted estimator with the calibration that says when to trust it."""

    estimator: Any
    card: dict
    calibration: calib.Calibration
    space: calib.DigitSpace

    def proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 10) class probabilities for (N, 28, 28) uint8 images, columns 0-9."""
        return _proba10(self.estimator, images.reshape(len(images), 784))

    def describe(self, images: np.ndarray, top: int) -> list[dict]:
        """One result dict per (28, 28) uint8 image, in order."""
        images = np.asarray(images, np.uint8).reshape(-1, 28, 28)
        proba = self.proba(images)
        scores = calib.digit_scores(self.space, images)
        results = []
        for img, p, s in zip(images, proba, scores):
            order = np.argsort(-p, kind="stable")
            reason = calib.assess(self.calibration, s, float(p[order[0]]), ink=bool(img.any()))
            results.append(
                {
                    "digit": int(order[0]),
                    "probability": float(p[order[0]]),
                    "top": [[int(d), float(p[d])] for d in order[:top]],
                    "confident": reason is None,
                    "reason": reason,
                    "mnist_image": img,
                }
            )
        return results


def _proba10(estimator, X: np.ndarray) -> np.ndarray:
    if hasattr(estimator, "predict_proba"):
        raw = np.asarray(estimator.predict_proba(X), np.float64)
    elif hasattr(estimator, "decision_function"):
        # No probabilities (a linear SVM): a softmax of the margins orders the
        # classes the same way; its threshold is calibrated like the others.
        d = np.asarray(estimator.decision_function(X), np.float64)
        e = np.exp(d - d.max(1, keepdims=True))
        raw = e / e.sum(1, keepdims=True)
    else:
        raise ModelFileError(f"{type(estimator).__name__} has neither predict_proba nor decision_function; use a classifier trained by mnistlab.")
    classes = np.asarray(getattr(estimator, "classes_", np.arange(raw.shape[1]))).astype(int)
    out = np.zeros((len(X), 10))
    out[:, classes] = raw
    return out


# Loaded models are kept: the CLI reads many files, the web server many requests.
_BY_DIR: dict[tuple[str, str], Predictor] = {}
_BY_ESTIMATOR: "weakref.WeakKeyDictionary[Any, Predictor]" = weakref.WeakKeyDictionary()
_LOADING = threading.Lock()


def load_predictor(model=None) -> Predictor:
    """Resolve ``model`` (None, a directory, an estimator or a Predictor) and its calibration.

    A saved model's calibration is cached in the user cache, keyed by the
    sha256 of its weights; an in-memory estimator is calibrated once per process.
    """
    if isinstance(model, Predictor):
        return model
    with _LOADING:  # concurrent first requests in the web server calibrate once, not once each
        return _load_predictor(model)


def _load_predictor(model) -> Predictor:
    from . import _modelfiles

    if model is None:
        model = _modelfiles.find_best_model()
        if model is None:
            raise ModelFileError(
                f"No saved model found under {_modelfiles.models_root()}; train one with "
                "`mnistlab train cnn` or `mnistlab train knn-deskew`, or pass --model DIR."
            )
    if isinstance(model, (str, os.PathLike)):
        card = _modelfiles.read_card(model)
        key = (str(Path(model).resolve()), str(card.get("weights_sha256")))
        if key not in _BY_DIR:
            estimator, card = _modelfiles.load_model(model)
            sha = card["weights_sha256"]
            space = calib.digit_space()
            cal = calib.load_calibration(sha, space)
            if cal is None:
                cal = calib.calibrate_model(lambda X: _proba10(estimator, X), space)
                calib.save_calibration(sha, space, cal)
            _BY_DIR[key] = Predictor(estimator, card, cal, space)
        return _BY_DIR[key]
    if not (hasattr(model, "predict_proba") or hasattr(model, "decision_function")):
        raise ModelFileError(
            f"model must be a fitted classifier, a model directory or None, got {type(model).__name__}."
        )
    try:
        return _BY_ESTIMATOR[model]
    except (KeyError, TypeError):
        pass
    space = calib.digit_space()
    cal = calib.calibrate_model(lambda X: _proba10(model, X), space)
    predictor = Predictor(model, {"estimator": type(model).__name__}, cal, space)
    try:
        _BY_ESTIMATOR[model] = predictor
    except TypeError:  # not weak-referenceable: calibrated again next time
        pass
    return predictor


def _check_top(top: int) -> int:
    if not isinstance(top, (int, np.integer)) or not 1 <= top <= 10:
        raise InputError(f"top must be a whole number from 1 to 10, got {top!r}.")
    return int(top)


def predict_image(image_or_path, model=None, *, top: int = 3) -> dict:
    """Which digit is in this image? Keys: digit, probability, top, confident, reason, mnist_image."""
    top = _check_top(top)
    predictor = load_predictor(model)
    return predictor.describe(to_mnist(image_or_path)[None], top)[0]


def read_number(image_or_path, model=None) -> dict:
    """Read a row of digits left to right. Keys: number (str), digits (per-digit dicts), confident."""
    predictor = load_predictor(model)
    digits = segment_digits(image_or_path)
    results = predictor.describe(np.stack(digits), 3) if digits else []
    return {
        "number": "".join(str(r["digit"]) for r in results),
        "digits": results,
        "confident": bool(results) and all(r["confident"] for r in results),
    }


def _read_array(source) -> tuple[np.ndarray, str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise InputError(f"{path} does not exist or is not a file; check the path.")
        try:
            if path.suffix.lower() == ".npy":
                return np.load(path, allow_pickle=False), label
            return np.loadtxt(path, delimiter=",", ndmin=1), label
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path} could not be read as numbers ({exc}); save one digit as 784 comma-separated values or with numpy.save.") from None
    return np.asarray(source), "the array"


def _as_digit(a: np.ndarray, label: str) -> np.ndarray:
    """One (28, 28) uint8 digit from 784 values; 0-1 floats are scaled to 0-255."""
    if a.size != 784 or a.squeeze().shape not in ((784,), (28, 28)):
        raise InputError(f"{label}: got {a.size} values with shape {a.shape}, expected 784 values or a 28x28 array (one digit).")
    if a.dtype.kind not in "uifb":
        raise InputError(f"{label} holds {a.dtype} values, expected numbers from 0 to 255.")
    a = a.astype(np.float64).reshape(28, 28)
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
        raise InputError(f"{label} has values outside 0-255 (or NaN); expected pixel values from 0 to 255 (or 0 to 1).")
    if a.max() <= 1.0:
        a = a * 255
    return np.rint(a).astype(np.uint8)


def predict_array(array_or_path, model=None, *, top: int = 3) -> dict:
    """Predict one digit given as 784 values or a 28x28 array (or a .npy/.csv file of one), used as is."""
    top = _check_top(top)
    digit = _as_digit(*_read_array(array_or_path))
    return load_predictor(model).describe(digit[None], top)[0]


def predict_file(path, model=None, *, top: int = 3, number: bool = False) -> dict:
    """What ``mnistlab predict`` does with one file: arrays by suffix, everything else as an image."""
    if Path(path).suffix.lower() in ARRAY_SUFFIXES:
        result = predict_array(path, model, top=top)
        if number:
            return {"number": str(result["digit"]), "digits": [result], "confident": result["confident"]}
        return result
    return read_number(path, model) if number else predict_image(path, model, top=top)


def _round(result: dict) -> dict:
    out = {}
    for key, value in result.items():
        if key == "mnist_image":
            continue
        if key == "probability":
            value = round(value, 4)
        elif key == "top":
            value = [[d, round(p, 4)] for d, p in value]
        elif key == "digits":
            value = [_round(r) for r in value]
        out[key] = value
    return out


def to_json(result: dict, file: str | None = None) -> dict:
    """A result as ``mnistlab predict --json`` prints it: ``file`` first, no image, probabilities to 4 places."""
    return {"file": file, **_round(result)}
