"""A fitted estimator given as ``model``: its classifier, checked, and its probability cut, calibrated once.

The cut is kept by the estimator, weakly, and holds nothing of it: an
estimator a script no longer holds is freed (a kept ``Predictor``, whose
classifier calls the estimator, kept every one ever given alive). It is kept
with marks of the fit it was calibrated for, so an estimator fitted again (on
other images, or images of another size) is calibrated and checked again, not
answered with the cut of its earlier fit.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import numpy as np

from mnistlab.errors import ModelFileError
from mnistlab.models.proba import digit_classes, digit_probabilities, pixels_read
from mnistlab.trust.calibration import calibrate_on_mnist
from mnistlab.trust.reader import Reader
from mnistlab.trust.thresholds import ProbabilityCut

__all__ = ["classifier", "estimator_cut"]

_CUTS: weakref.WeakKeyDictionary[Any, tuple[list, ProbabilityCut]] = weakref.WeakKeyDictionary()
_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def classifier(estimator) -> Callable[[np.ndarray], np.ndarray]:
    """(N, 28, 28) uint8 -> (N, 10) probabilities of ``estimator``, refused first if it reads no digits 0-9."""
    if hasattr(estimator, "classes_"):
        digit_classes(estimator)  # a model of other classes is refused when loaded, not at each answer
    _check_reads_mnist(estimator)
    return lambda images: digit_probabilities(estimator, images.reshape(len(images), 784))


def _check_reads_mnist(estimator) -> None:
    """Refuse a model fitted on images of another size: every answer hands it a 28x28 digit (784 pixels)."""
    pixels, shape = pixels_read(estimator), getattr(estimator, "image_shape_", None)
    if pixels not in (None, 784):
        size = f"{shape[0]} x {shape[1]} images" if shape is not None else f"images of {pixels} pixels"
        raise ModelFileError(
            f"This {type(estimator).__name__} was trained on {size}, and mnistlab reads every photo into a 28 x 28 "
            "digit (784 pixels); answer with a model trained on 28 x 28 images, such as MNIST's."
        )


def estimator_cut(model, classify: Callable[[np.ndarray], np.ndarray], reader: Reader) -> ProbabilityCut:
    """``model``'s probability cut (``classify`` is its ``classifier``), calibrated on the MNIST test set once a fit."""
    with suppress(KeyError, TypeError):  # not seen, or not weak-referenceable
        marks, cut = _CUTS[model]
        if _same_fit(marks, model):
            return cut
    try:
        cut = calibrate_on_mnist(classify, reader)
    except (AttributeError, ValueError) as exc:  # scikit-learn's NotFittedError is both; not imported here
        if type(exc).__name__ != "NotFittedError":
            raise
        raise ModelFileError(f"This {type(model).__name__} is not fitted yet; call fit first.") from None
    with suppress(TypeError):  # not weak-referenceable: calibrated again next time
        _CUTS[model] = ([(key, _mark(value)) for key, value in _fitted(model)], cut)
    return cut


def _fitted(estimator) -> list[tuple[tuple[int, str], Any]]:
    """The fitted attributes (public, ending in ``_``, as scikit-learn names them) of ``estimator`` and of the
    estimators among its parameters (a pipeline's steps), each keyed by its owner and name; a fit sets them anew."""
    owners = [estimator]
    if callable(getattr(estimator, "get_params", None)):
        owners += [v for v in estimator.get_params(deep=True).values() if hasattr(v, "get_params")]
    return [
        ((id(owner), name), value)
        for owner in owners
        for name, value in sorted(getattr(owner, "__dict__", {}).items())
        if name.endswith("_") and not name.startswith("_")
    ]


def _mark(value) -> tuple[str, Any]:
    """What tells ``value`` from the one a later fit sets, holding none of it: a weak reference, a number or
    string itself, else its id."""
    with suppress(TypeError):
        return "ref", weakref.ref(value)
    return ("value", value) if isinstance(value, _SCALARS) else ("id", id(value))


def _same_fit(marks: list, estimator) -> bool:
    """Whether ``estimator``'s fitted attributes are still those ``marks`` were made of."""
    now = _fitted(estimator)
    if [key for key, _ in marks] != [key for key, _ in now]:
        return False
    for (_, (kind, held)), (_, value) in zip(marks, now):
        if kind == "ref" and held() is not value:
            return False
        if kind == "id" and held != id(value):
            return False
        if kind == "value" and not (type(held) is type(value) and (held == value or held != held and value != value)):
            return False
    return True
