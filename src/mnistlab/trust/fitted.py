"""A fitted estimator given as ``model``: its classifier, checked, and its probability cut, calibrated once.

The cut is kept by the estimator, weakly, and holds nothing of it: an
estimator a script no longer holds is freed (a kept ``Predictor``, whose
classifier calls the estimator, kept every one ever given alive).
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

_CUTS: weakref.WeakKeyDictionary[Any, ProbabilityCut] = weakref.WeakKeyDictionary()


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
    """``model``'s probability cut (``classify`` is its ``classifier``), calibrated on the MNIST test set once."""
    with suppress(KeyError, TypeError):  # not seen, or not weak-referenceable
        return _CUTS[model]
    try:
        cut = calibrate_on_mnist(classify, reader)
    except (AttributeError, ValueError) as exc:  # scikit-learn's NotFittedError is both; not imported here
        if type(exc).__name__ != "NotFittedError":
            raise
        raise ModelFileError(f"This {type(model).__name__} is not fitted yet; call fit first.") from None
    with suppress(TypeError):  # not weak-referenceable: calibrated again next time
        _CUTS[model] = cut
    return cut
