"""What a training run records: its result object and its model card, from one source.

``train_recipe`` returns the result (flat, for people and ``--json``); the
model directory keeps the card (nested, for reproducing and checking the
model later). Both are views of one ``Record``, so the fields they share
cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy
import sklearn
import skops
from sklearn.base import BaseEstimator

from mnistlab._version import __version__
from mnistlab.lab.options import RunOptions
from mnistlab.lab.wilson import wilson_interval
from mnistlab.models.folder import MODEL_FILES
from mnistlab.models.recipes import Recipe

if TYPE_CHECKING:
    from mnistlab.lab.specs import Contender

__all__ = [
    "Record",
    "run_metrics",
    "json_safe_params",
    "trained_device",
    "package_versions",
    "predictions_sha256",
    "arrays_sha256",
    "tuned_elsewhere",
]


@dataclass(frozen=True)
class Record:
    """One fitted and tested recipe."""

    recipe: Recipe
    options: RunOptions  # with the recipe's folds filled in
    dataset: str  # "mnist", or "arrays" for data passed from Python
    data_sha256: str
    params: dict  # the estimator's parameters, JSON-safe
    metrics: dict  # see run_metrics
    notes: list[str]  # convergence warnings of the fit, one sentence each
    calibration: dict | None = None  # the probability cut for "not sure" answers (trust.calibration)
    data_dir: str | None = None  # the folder of a dataset given as a folder: its name alone does not find it again
    # The dataset's own brightest pixel value where its pixels were stretched to 0-255 for the model (scikit-learn's
    # digits: 16): data_sha256 is of the dataset as published, which the model never read as it is.
    stretched_from: int | None = None
    device: str | None = None  # where a CNN trained ("cpu", "cuda:0 (...)"): its params say "auto"; see trained_device

    def _shared(self) -> dict:
        """The fields the result and the card both hold: what ran, on which data, from which seed, with which
        packages (``train --json`` is a run's record too, not only a pointer to its card)."""
        o = self.options
        return {
            "recipe": self.recipe.name,
            "description": self.recipe.description,
            "family": self.recipe.family,
            "seed": o.seed,
            "split": o.split,
            "test_size": o.test_size,
            "limit": o.limit,
            "dataset": self.dataset,
            "data_sha256": self.data_sha256,
            **({"data_dir": self.data_dir} if self.data_dir is not None else {}),
            **({"stretched_from": self.stretched_from} if self.stretched_from is not None else {}),
            **({"device": self.device} if self.device is not None else {}),
            "versions": package_versions(),
        }

    def card(self) -> dict:
        """The model card saved beside the weights: enough to reproduce the model and check a reload."""
        return {
            **self._shared(),
            "params": self.params,
            "metrics": self.metrics,
            **({"calibration": self.calibration} if self.calibration is not None else {}),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    def result(self, model_dir: Path) -> dict:
        """The result object of ``train_recipe`` and ``mnistlab train --json``."""
        return {
            **self._shared(),
            "cv": self.options.cv,
            **self.metrics,
            "n_jobs": self.options.n_jobs,
            "notes": self.notes,
            "model_dir": str(Path(model_dir).absolute()),  # recorded runs are read from other folders too
            "model_size_bytes": _dir_size(model_dir),
        }


def run_metrics(
    estimator, cv_scores: list[float], seconds: dict, *, n_train: int, y_test: np.ndarray, y_pred: np.ndarray
) -> dict:
    """Accuracies and timings (``seconds``) of one run, as saved in the card and flattened into the result."""
    metrics = {
        "cv_scores": cv_scores,
        "cv_mean": float(np.mean(cv_scores)) if cv_scores else None,
        "cv_std": float(np.std(cv_scores)) if cv_scores else None,
        "test_accuracy": float(np.mean(y_pred == y_test)),
        "test_accuracy_ci95": wilson_interval(int(np.count_nonzero(y_pred == y_test)), len(y_test)),
        **seconds,  # fit_seconds, predict_seconds, cv_seconds
        "n_train": int(n_train),
        "n_test": int(len(y_test)),
        # Lets `evaluate` prove that the reloaded model predicts exactly as the trained one did.
        "test_predictions_sha256": predictions_sha256(y_pred),
    }
    # CNNs also report how many epochs ran (fewer with a target) and the time in their training loop.
    trained = _last_step(estimator)
    for key, attr in (("epochs", "n_epochs_"), ("train_seconds", "train_seconds_")):
        if hasattr(trained, attr):
            metrics[key] = getattr(trained, attr)
    return metrics


def trained_device(estimator) -> str | None:
    """The device a fitted estimator trained on, where it says (a CNN's ``device_``; scikit-learn's run on the
    CPU and say nothing): its ``device`` parameter may be "auto", which names no device."""
    device = getattr(_last_step(estimator), "device_", None)
    return device if isinstance(device, str) else None


def _last_step(estimator):
    """The classifier of a Pipeline (its last step, a CNN after a transformer), where what trained says what it
    did: the Pipeline itself has no ``device_`` or ``n_epochs_``. Any other estimator as it is."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps and isinstance(steps[-1], tuple) and len(steps[-1]) == 2:
        return _last_step(steps[-1][1])
    return estimator


def json_safe_params(estimator) -> dict:
    """``get_params(deep=True)`` with estimators named by class and other objects by repr."""

    def safe(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value if not (isinstance(value, float) and not np.isfinite(value)) else str(value)
        if isinstance(value, np.generic):
            return safe(value.item())
        if isinstance(value, BaseEstimator):
            return type(value).__name__
        if isinstance(value, (list, tuple)):
            return [safe(v) for v in value]
        if isinstance(value, dict):
            return {str(k): safe(v) for k, v in value.items()}
        return repr(value)

    # A progress callback is how a run reports, not what it learns: keep it out of the card.
    return {key: safe(value) for key, value in sorted(estimator.get_params(deep=True).items()) if key != "callback"}


def package_versions(*also: str) -> dict:
    """Versions that decide whether a saved model behaves the same elsewhere; ``also``: other packages that
    shaped the run (a sweep's Ray), where installed."""
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
        "mnistlab": __version__,
    }
    # torch trains and loads the CNNs; onnxruntime runs the reader's nets that set a card's "not sure" cut, and
    # CNNs' onnxruntime backend. Both always, installed or imported: asking sys.modules alone, a process's first
    # saved model recorded no torch and every later one did.
    for package in ("torch", "onnxruntime", *also):
        version = _version(package)
        if version is not None:
            versions[package] = version
    return versions


def _version(package: str) -> str | None:
    """The version of ``package`` as imported, else as installed (without importing it: torch takes seconds)."""
    module = sys.modules.get(package)
    if module is not None:
        return str(module.__version__)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def predictions_sha256(y_pred: np.ndarray) -> str:
    """A fingerprint of predictions that is the same on every machine (int64 labels, C order)."""
    return hashlib.sha256(np.ascontiguousarray(y_pred, dtype=np.int64).tobytes()).hexdigest()


def arrays_sha256(*parts: np.ndarray) -> str:
    """sha256 of the caller's arrays, each with its dtype and shape (the bytes alone match any cut of the rows)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(f"{part.dtype.str}{part.shape}\0".encode())
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def _dir_size(model_dir: Path) -> int:
    """Bytes on disk of the model's files in its directory (card, weights, a module's ONNX): not of the other
    files a folder given as --out may hold, which the save leaves alone."""
    files = (Path(model_dir) / name for name in MODEL_FILES)
    return sum(p.stat().st_size for p in files if p.is_file())


def tuned_elsewhere(contender: Contender, dataset: str, data_sha256: str) -> list[str]:
    """A note for a spec file whose parameters a sweep chose on other data than the run fits it on (a sweep on
    fashion-mnist, then `train best.json`, which fits MNIST); none for a recipe, or a spec file that says nothing."""
    saved = contender.tuned_on or {}
    chosen, sha256 = saved.get("dataset"), saved.get("data_sha256")
    if not isinstance(chosen, str) or sha256 in (None, data_sha256):
        return []
    where = saved.get("data_dir") if isinstance(saved.get("data_dir"), str) else chosen
    return [
        f"{contender.spec} was tuned on {chosen}, but train fits and tests it on {dataset}; to fit it on {chosen}, "
        f"run `mnistlab compare {shlex.quote(contender.spec)} --dataset {shlex.quote(str(where))}`."
    ]
