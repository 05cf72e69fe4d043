"""Measure a saved model on the test set it was trained against."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mnistlab.errors import InputError
from mnistlab.lab.options import Progress, RunOptions, check_writable_dir, noop
from mnistlab.lab.record import predictions_sha256
from mnistlab.lab.train import load_data, thread_limits
from mnistlab.models.files import load_model
from mnistlab.models.proba import class_probabilities

__all__ = ["evaluate_model"]


def evaluate_model(model_dir, *, out_dir=None, progress: Progress | None = None, data=None) -> dict:
    """Measure a saved model on the test set it was trained against.

    Returns accuracy, per-class precision/recall/F1/support, the confusion
    matrix, and the paths of ``confusion.png`` and ``mistakes.png`` (written
    into ``out_dir``, default the model directory).
    """
    # The figures need matplotlib, which costs ~0.8 s to import: only when a model is evaluated.
    from mnistlab.lab.plots import save_confusion_matrix, save_misclassified_gallery

    check_writable_dir(out_dir if out_dir is not None else model_dir, "out_dir")  # before the model is measured
    progress = progress or noop
    progress(f"loading {model_dir}")
    estimator, card = load_model(model_dir)
    dataset = card.get("dataset")
    if data is None and dataset not in (None, "mnist"):  # only MNIST is found again from the card alone
        trained_on = "arrays passed from Python" if dataset == "arrays" else f"the dataset {dataset!r}, not MNIST"
        raise InputError(
            f"{model_dir} was trained on {trained_on}, and evaluate measures MNIST models only; in Python, pass "
            "its data: evaluate_model(model_dir, data=(X_train, X_test, y_train, y_test))."
        )
    # The card's split and seed give back the very test set of training (``limit`` only thins the training set).
    options = RunOptions(
        split=card.get("split", "official"), test_size=card.get("test_size"), seed=card.get("seed", 42)
    )
    test = load_data(options, data)
    X_test, y_test = test.X_test, test.y_test
    progress(f"predicting {len(y_test):,} test images")
    start = time.perf_counter()
    with thread_limits(card.get("family", "classic")):  # as in training, for identical predictions
        y_pred = np.asarray(estimator.predict(X_test))
        predict_seconds = time.perf_counter() - start
        proba = class_probabilities(estimator, X_test)
    out_dir = Path(out_dir) if out_dir is not None else Path(model_dir)
    progress("drawing the confusion matrix and the mistakes")
    title = f"{card.get('recipe', 'model')}: accuracy {np.mean(y_pred == y_test):.4f}"
    confusion_png = save_confusion_matrix(y_test, y_pred, out_dir / "confusion.png", title=title)
    gallery_png = save_misclassified_gallery(X_test, y_test, y_pred, proba, out_dir / "mistakes.png")
    trained = (card.get("metrics") or {}).get("test_predictions_sha256")
    return {
        "model_dir": str(model_dir),
        "recipe": card.get("recipe"),
        "accuracy": float(np.mean(y_pred == y_test)),
        "n_test": int(len(y_test)),
        "predict_seconds": predict_seconds,
        "per_class": _per_class(y_test, y_pred),
        "confusion_matrix": confusion_matrix(y_test, y_pred).tolist(),
        "confusion_png": str(confusion_png),
        "gallery_png": str(gallery_png),
        "data_sha256": test.sha256,
        "same_data_as_training": test.sha256 == card.get("data_sha256"),
        "same_predictions_as_training": None if trained is None else trained == predictions_sha256(y_pred),
    }


def _per_class(y_test: np.ndarray, y_pred: np.ndarray) -> list[dict]:
    """Precision, recall, F1 and support of each class that occurs in either array."""
    precision, recall, f1, support = precision_recall_fscore_support(y_test, y_pred, zero_division=0)
    labels = np.unique(np.concatenate([y_test, y_pred]))
    return [
        {"digit": int(d), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for d, p, r, f, s in zip(labels, precision, recall, f1, support)
    ]
