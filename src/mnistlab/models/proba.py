"""Class probabilities from any fitted classifier, including those that only give margins."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from mnistlab.errors import InputError, ModelFileError

__all__ = [
    "class_probabilities",
    "decision_margins",
    "margin_lead",
    "proba_columns",
    "digit_probabilities",
    "digit_classes",
    "pixels_read",
    "small_chunks",
    "classic_limits",
]

# scikit-learn sizes its chunks of pairwise distances (k-NN's predict) to its "working memory", 1 GiB by default,
# and on uint8 pixels with n_jobs it held 2-3 such chunks at once: 2.2 GB over the 60,000 MNIST digits (0.45 GB
# at 128 MiB, the same distances and answers, row for row, in as much time).
WORKING_MEMORY_MIB = 128


def small_chunks() -> contextlib.AbstractContextManager:
    """scikit-learn's working memory at ``WORKING_MEMORY_MIB`` (or the caller's, if smaller) inside the block."""
    from sklearn import config_context, get_config  # on demand: importing this module stays light

    return config_context(working_memory=min(get_config()["working_memory"], WORKING_MEMORY_MIB))


@contextlib.contextmanager
def classic_limits() -> Iterator[None]:
    """What a classic (scikit-learn) model fits and predicts under: one BLAS thread, and ``small_chunks``."""
    from threadpoolctl import threadpool_limits  # on demand: importing this module stays light

    with threadpool_limits(limits=1, user_api="blas"), small_chunks():
        yield


def class_probabilities(estimator, X) -> np.ndarray:
    """(N, n_classes) probabilities, columns in ``estimator.classes_`` order.

    Models without ``predict_proba`` (a hinge-loss SGD, an SVC without
    ``probability=True``) get a softmax of their decision margins: it orders the
    classes the same way, and thresholds on it are calibrated like any other.
    A binary classifier's single margin (N,), positive for ``classes_[1]``, is
    the margins (0, m): the logistic of m for ``classes_[1]``, as a binary
    logistic regression reads its margin.
    """
    if hasattr(estimator, "predict_proba"):
        try:
            with small_chunks():
                return np.asarray(estimator.predict_proba(X), np.float64)
        except AttributeError as exc:  # SVC(probability=False) has the method but refuses to run it
            from sklearn.exceptions import NotFittedError  # on demand: importing this module stays light

            if isinstance(exc, NotFittedError):  # an AttributeError too: not "has no predict_proba"
                raise
    margins = decision_margins(estimator, X)
    if margins is None:
        raise ModelFileError(_no_probabilities(estimator))
    e = np.exp(margins - margins.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _no_probabilities(estimator) -> str:
    """Why ``class_probabilities`` has nothing to read ``estimator``'s probabilities from, in one sentence."""
    name = type(estimator).__name__
    if not hasattr(estimator, "decision_function"):
        return f"{name} has neither predict_proba nor decision_function; use a classifier trained by mnistlab."
    return (
        f"{name} has no predict_proba, and its decision_function gives no margin per class (an SVC's "
        "decision_function_shape='ovo' gives one per pair of classes); use decision_function_shape='ovr', or a "
        "classifier with predict_proba."
    )


def decision_margins(estimator, X) -> np.ndarray | None:
    """(N, n_classes) decision margins, columns in ``estimator.classes_`` order (a binary classifier's one
    margin m, positive for ``classes_[1]``, as (0, m)); None for a classifier without ``decision_function``
    (KNN, trees, CNNs) or whose margins are not one per class (an SVC's one-vs-one ones, one per pair of classes:
    45 for 10 digits, 3 for 3 digits). Where probabilities saturate at 1.0, margins still say which answer was surer."""
    if not hasattr(estimator, "decision_function") or _one_vs_one(estimator):
        return None
    margins = np.asarray(estimator.decision_function(X), np.float64)
    if margins.ndim == 1:  # binary: scikit-learn's one margin per image
        margins = np.column_stack([np.zeros_like(margins), margins])
    n_classes = len(getattr(estimator, "classes_", ()))
    if margins.ndim != 2 or (n_classes and margins.shape[1] != n_classes):
        return None
    return margins


def _one_vs_one(estimator) -> bool:
    """Whether ``estimator`` (or a step of it) is set to give one-vs-one margins (``decision_function_shape``)."""
    params = estimator.get_params() if callable(getattr(estimator, "get_params", None)) else {}
    return any(k.split("__")[-1] == "decision_function_shape" and v == "ovo" for k, v in params.items())


def margin_lead(margins, shape: tuple, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """How far the margin in ``columns`` (the predicted class) of each of ``rows`` is ahead of the row's best
    other one; ``margins`` must have ``shape``, the probabilities' (N, n_classes)."""
    m = np.asarray(margins, dtype=np.float64)
    if m.shape != tuple(shape):
        raise InputError(f"margins has shape {m.shape}, expected {tuple(shape)} like proba.")
    own = m[rows, columns]
    others = m[rows]  # a copy: fancy indexing
    others[np.arange(len(rows)), columns] = -np.inf
    return own - others.max(axis=1) if len(rows) else np.zeros(0)


def proba_columns(pred: np.ndarray, classes, k: int) -> np.ndarray:
    """The column of ``k`` probability columns that holds each predicted label's probability: its place in
    ``classes`` (an estimator's ``classes_``, such as 3 and 8), or with ``classes`` None the label itself (0..k-1)."""
    if classes is None:
        outside = (pred < 0) | (pred >= k)
        if outside.any():
            raise InputError(
                f"y_pred holds label {pred[outside][0]}, expected classes 0..{k - 1} (one proba column each)."
            )
        return pred
    names = np.asarray(classes)
    if names.ndim != 1 or len(names) != k:
        raise InputError(f"classes has shape {names.shape}, expected ({k},): one class per proba column.")
    order = np.argsort(names, kind="stable")
    at = np.minimum(np.searchsorted(names[order], pred), k - 1)
    unknown = names[order][at] != pred
    if unknown.any():
        raise InputError(f"y_pred holds label {pred[unknown][0].item()!r}, expected one of classes {names.tolist()}.")
    return order[at]


def digit_probabilities(estimator, X) -> np.ndarray:
    """(N, 10) probabilities with column d for digit d, whatever subset of digits the model knows."""
    raw = class_probabilities(estimator, X)
    classes = digit_classes(estimator) if hasattr(estimator, "classes_") else np.arange(raw.shape[1])
    out = np.zeros((len(raw), 10))
    out[:, classes] = raw
    return out


def digit_classes(estimator) -> np.ndarray:
    """The digit that each of a fitted classifier's ``classes_`` names (7, 7.0 or "7"); a ``ModelFileError``
    for a model of other classes, which cannot read digits."""
    classes = list(estimator.classes_)
    digits = [_digit(c) for c in classes]
    if None in digits:
        shown = ", ".join(repr(c.item() if isinstance(c, np.generic) else c) for c in classes[:12])
        shown += ", ..." if len(classes) > 12 else ""
        raise ModelFileError(
            f"{type(estimator).__name__} was trained on the classes {shown}, not on digits 0-9, so it cannot "
            "read digits; train it on MNIST's labels 0-9."
        )
    return np.array(digits)


def _digit(label) -> int | None:
    """A class label as the digit it names, or None (for True and False too: a detector's answers, not 1 and 0)."""
    if isinstance(label, bool | np.bool_):
        return None
    try:
        value = float(label)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() and 0 <= value <= 9 else None


def pixels_read(estimator) -> int | None:
    """How many pixels a fitted classifier reads per image: scikit-learn's ``n_features_in_`` (a CNN fitted
    on flat rows of 50 values reads 50, padded to its 8 x 8 image), else a CNN's height x width; None for a
    classifier that says neither."""
    n = getattr(estimator, "n_features_in_", None)
    if n is not None:
        return int(n)
    shape = getattr(estimator, "image_shape_", None)
    return int(np.prod(shape)) if shape is not None else None
