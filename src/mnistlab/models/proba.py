"""Class probabilities from any fitted classifier, including those that only give margins."""

from __future__ import annotations

import numpy as np

from mnistlab.errors import ModelFileError

__all__ = ["class_probabilities", "digit_probabilities"]


def class_probabilities(estimator, X) -> np.ndarray:
    """(N, n_classes) probabilities, columns in ``estimator.classes_`` order.

    Models without ``predict_proba`` (a hinge-loss SGD, an SVC without
    ``probability=True``) get a softmax of their decision margins: it orders the
    classes the same way, and thresholds on it are calibrated like any other.
    """
    if hasattr(estimator, "predict_proba"):
        try:
            return np.asarray(estimator.predict_proba(X), np.float64)
        except AttributeError:  # SVC(probability=False) has the method but refuses to run it
            pass
    if not hasattr(estimator, "decision_function"):
        raise ModelFileError(
            f"{type(estimator).__name__} has neither predict_proba nor decision_function; use a classifier trained by mnistlab."
        )
    margins = np.asarray(estimator.decision_function(X), np.float64)
    e = np.exp(margins - margins.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def digit_probabilities(estimator, X) -> np.ndarray:
    """(N, 10) probabilities with column d for digit d, whatever subset of digits the model knows."""
    raw = class_probabilities(estimator, X)
    classes = np.asarray(getattr(estimator, "classes_", np.arange(raw.shape[1]))).astype(int)
    out = np.zeros((len(raw), 10))
    out[:, classes] = raw
    return out
