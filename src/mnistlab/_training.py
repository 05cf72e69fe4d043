"""Train, cross-validate, evaluate and compare recipes on MNIST.

``train_recipe`` is the lesson in one call: cross-validation accuracies per
fold, a fit on the training set, the test accuracy, timings, and a saved
model directory whose card records everything needed to reproduce it.
``evaluate_model`` reloads such a directory and measures it on the same test
set; ``compare`` runs several recipes and writes an HTML report.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._errors import InputError
from ._modelfiles import default_model_dir, load_model, save_model
from ._recipes import DEFAULT_LINEUP, get_recipe

__all__ = ["train_recipe", "evaluate_model", "compare", "json_safe_params", "package_versions"]

Progress = Callable[[str], None]  # receives a short description of the current step
_MIN_LIMIT = 20  # a stratified subset needs a couple of images of each of the 10 classes


def _noop(_: str) -> None:
    pass


def json_safe_params(estimator) -> dict:
    """``get_params(deep=True)`` with estimators named by class and other objects by repr."""
    from sklearn.base import BaseEstimator

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


def package_versions() -> dict:
    """Versions that decide whether a saved model behaves the same elsewhere."""
    import numpy
    import scipy
    import sklearn
    import skops

    from . import __version__

    versions = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
        "mnistlab": __version__,
    }
    if "torch" in sys.modules:  # only when a CNN was involved; importing torch costs seconds
        versions["torch"] = sys.modules["torch"].__version__
    return versions


def _convergence_notes(caught) -> list[str]:
    """ConvergenceWarnings of a fit as unique sentences; other warnings are re-issued as they came."""
    notes = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            if str(w.message) not in notes:
                notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return notes


def _thread_limits(family: str):
    """One BLAS thread for classic recipes; CNNs keep torch's own thread settings.

    Their BLAS work (logistic regression, PCA) is memory-bound, and OpenBLAS's
    spinning threads made logreg's fit on 60,000 digits 5x slower on a busy
    2-core machine (114 s -> 22 s wall, 50 s -> 8 s CPU, same accuracy). A fixed
    thread count also makes the floating-point results independent of the machine.
    """
    if family != "classic":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _predictions_sha256(y_pred: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(y_pred, dtype=np.int64).tobytes()).hexdigest()


def _load_data(split: str, test_size, seed: int, limit: int | None, data=None):
    """(X_train, X_test, y_train, y_test, data_sha256) with ``limit`` applied to the training set."""
    if data is not None:
        X_train, X_test, y_train, y_test = (np.asarray(a) for a in data)
        digest = hashlib.sha256()
        for part in (X_train, X_test, y_train, y_test):
            digest.update(np.ascontiguousarray(part).tobytes())
        data_sha256 = digest.hexdigest()
    else:
        from ._load import load_mnist, load_split

        bunch = load_mnist("mnist")
        X_train, X_test, y_train, y_test = load_split(split=split, test_size=test_size, seed=seed, bunch=bunch)
        data_sha256 = bunch.details["data_sha256"]
    if limit is not None:
        if not _MIN_LIMIT <= limit <= len(y_train):
            raise InputError(f"--limit must be between {_MIN_LIMIT} and {len(y_train)} training images, got {limit}.")
        if limit < len(y_train):
            from sklearn.model_selection import train_test_split

            X_train, _, y_train, _ = train_test_split(
                X_train, y_train, train_size=limit, stratify=y_train, random_state=seed
            )
    return X_train, X_test, y_train, y_test, data_sha256


def _fit_and_score(recipe_name, *, cv, split, test_size, seed, limit, n_jobs, out, progress, data, target=None):
    """The work behind ``train_recipe``; also returns the estimator and test predictions for ``compare``."""
    recipe = get_recipe(recipe_name)
    if cv is None:
        cv = recipe.cv
    if cv != 0 and cv < 2:
        raise InputError(f"--cv must be 0 (skip cross-validation) or at least 2 folds, got {cv}.")
    if n_jobs == 0 or n_jobs < -1:
        raise InputError(f"--n-jobs must be a positive number of processes or -1 for all cores, got {n_jobs}.")
    if target is not None and recipe.family != "cnn":
        raise InputError(f"--target applies to CNN recipes only, got {recipe.name!r}; drop --target or pick a CNN recipe.")
    progress = progress or _noop
    progress(f"{recipe.name}: loading data")
    X_train, X_test, y_train, y_test, data_sha256 = _load_data(split, test_size, seed, limit, data)

    with _thread_limits(recipe.family):
        cv_scores: list[float] = []
        cv_seconds = 0.0
        if cv:
            from sklearn.model_selection import StratifiedKFold, cross_val_score

            progress(f"{recipe.name}: {cv}-fold cross-validation on {len(y_train):,} images")
            start = time.perf_counter()
            # Folds run in parallel processes; each estimator then runs single-job so
            # the cores are not oversubscribed.
            folds = StratifiedKFold(n_splits=cv)  # what cross_val_score(cv=K) uses for a classifier
            with warnings.catch_warnings():
                # The final fit below reports non-convergence once; K more copies add nothing.
                warnings.simplefilter("ignore", ConvergenceWarning)
                scores = cross_val_score(recipe.build(seed, 1), X_train, y_train, cv=folds, n_jobs=n_jobs, scoring="accuracy")
            cv_seconds = time.perf_counter() - start
            cv_scores = [float(s) for s in scores]

        estimator = recipe.build(seed, n_jobs)
        _configure_cnn(estimator, recipe.name, target, progress)
        params = json_safe_params(estimator)
        progress(f"{recipe.name}: fitting on {len(y_train):,} images")
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            estimator.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - start
        notes = _convergence_notes(caught)

        progress(f"{recipe.name}: predicting {len(y_test):,} test images")
        start = time.perf_counter()
        y_pred = np.asarray(estimator.predict(X_test))
        predict_seconds = time.perf_counter() - start
    test_accuracy = float(np.mean(y_pred == y_test))

    metrics = {
        "cv_scores": cv_scores,
        "cv_mean": float(np.mean(cv_scores)) if cv_scores else None,
        "cv_std": float(np.std(cv_scores)) if cv_scores else None,
        "test_accuracy": test_accuracy,
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "cv_seconds": cv_seconds,
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        # Lets `evaluate` prove that the reloaded model predicts exactly as the trained one did.
        "test_predictions_sha256": _predictions_sha256(y_pred),
    }
    # CNNs also report how many epochs ran (fewer with --target) and the time in their training loop.
    for key, attr in (("epochs", "n_epochs_"), ("train_seconds", "train_seconds_")):
        if hasattr(estimator, attr):
            metrics[key] = getattr(estimator, attr)
    result: dict[str, Any] = {
        "recipe": recipe.name,
        "description": recipe.description,
        "family": recipe.family,
        "cv": cv,
        **metrics,
        "model_dir": None,
        "model_size_bytes": None,
        "seed": seed,
        "split": split,
        "test_size": test_size,
        "limit": limit,
        "n_jobs": n_jobs,
        "data_sha256": data_sha256,
        "notes": notes,
    }
    model_dir = Path(out) if out is not None else default_model_dir(recipe.name)
    progress(f"{recipe.name}: saving to {model_dir}")
    card = {
        "recipe": recipe.name,
        "description": recipe.description,
        "family": recipe.family,
        "params": params,
        "seed": seed,
        "dataset": "mnist" if data is None else "arrays",
        "split": split,
        "test_size": test_size,
        "limit": limit,
        "data_sha256": data_sha256,
        "versions": package_versions(),
        "metrics": metrics,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_model(estimator, model_dir, card=card)
    result["model_dir"] = str(model_dir)
    result["model_size_bytes"] = _dir_size(model_dir)
    return result, estimator, (X_test, y_test, y_pred)


def _configure_cnn(estimator, name: str, target: float | None, progress: Progress) -> None:
    """Pass ``--target`` to estimators that take one, and show per-epoch progress of CNNs."""
    params = estimator.get_params()
    if target is not None:
        estimator.set_params(target=target)
    if "callback" not in params or progress is _noop:
        return

    members, goal = params["n_members"], estimator.get_params()["target"]
    parallel = members > 1 and params.get("n_jobs", 1) != 1
    done = []

    def on_epoch(row: dict) -> None:
        # Called after each epoch. The message names the step now starting, so its
        # finished line shows that step's time, and carries the stats of the epoch just done.
        stats = f"epoch {row['epoch']}: loss {row['loss']:.4f}, train acc {row['train_accuracy']:.4f}"
        if row["val_accuracy"] is not None:
            stats += f", held-out acc {row['val_accuracy']:.4f}"
        if parallel:  # members run side by side: rows interleave, so count epochs instead
            done.append(row)
            progress(f"{name}: {len(done)}/{members * row['epochs']} member epochs done (member {row['member'] + 1} {stats})")
            return
        member, epoch = row["member"], row["epoch"] + 1
        reached = row["val_accuracy"] is not None and row["val_accuracy"] >= goal
        if epoch > row["epochs"] or reached:
            member, epoch = member + 1, 1
        who = f"member {member + 1}/{members} " if members > 1 else ""
        step = f"{who}epoch {epoch}/{row['epochs']}" if member < members else "training done"
        progress(f"{name}: {step} ({stats})")

    estimator.set_params(callback=on_epoch)


def _dir_size(model_dir: Path) -> int:
    """Bytes on disk of the model directory's weights and card."""
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file() and not p.name.startswith("."))


def train_recipe(
    recipe: str,
    *,
    cv: int | None = None,
    split: str = "official",
    test_size=None,
    seed: int = 42,
    limit: int | None = None,
    n_jobs: int = 1,
    out=None,
    progress: Progress | None = None,
    data=None,
    target: float | None = None,
) -> dict:
    """Cross-validate, fit, test and save one recipe; return the result object.

    ``cv=None`` uses the recipe's default folds (3, or 0 = skipped for slow
    recipes). ``limit`` keeps a stratified subset of that many training images.
    ``data=(X_train, X_test, y_train, y_test)`` replaces loading MNIST.
    The model is saved to ``out`` or ``default_model_dir(recipe)``. ``target``
    (CNN recipes) stops training once a held-out accuracy reaches it; CNN
    results also hold ``epochs`` and ``train_seconds``.
    """
    result, _, _ = _fit_and_score(
        recipe, cv=cv, split=split, test_size=test_size, seed=seed, limit=limit,
        n_jobs=n_jobs, out=out, progress=progress, data=data, target=target,
    )
    return result


def _scores_for_gallery(estimator, X) -> np.ndarray:
    """Class probabilities, or a softmax of decision scores for models without them (hinge SGD)."""
    if hasattr(estimator, "predict_proba"):
        try:
            return np.asarray(estimator.predict_proba(X))
        except AttributeError:  # e.g. SVC(probability=False) exposes the method but refuses it
            pass
    scores = np.asarray(estimator.decision_function(X), dtype=np.float64)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def evaluate_model(model_dir, *, out_dir=None, progress: Progress | None = None, data=None) -> dict:
    """Measure a saved model on the test set it was trained against.

    Returns accuracy, per-class precision/recall/F1/support, the confusion
    matrix, and the paths of ``confusion.png`` and ``mistakes.png`` (written
    into ``out_dir``, default the model directory).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from ._plots import save_confusion_matrix, save_misclassified_gallery

    progress = progress or _noop
    progress(f"loading {model_dir}")
    estimator, card = load_model(model_dir)
    if data is None and card.get("dataset") not in (None, "mnist"):
        raise InputError(f"{model_dir} was trained on arrays passed from Python, so evaluate it with evaluate_model(..., data=...).")
    _, X_test, _, y_test, data_sha256 = _load_data(
        card.get("split", "official"), card.get("test_size"), card.get("seed", 42), None, data
    )
    progress(f"predicting {len(y_test):,} test images")
    start = time.perf_counter()
    with _thread_limits(card.get("family", "classic")):  # as in training, for identical predictions
        y_pred = np.asarray(estimator.predict(X_test))
        predict_seconds = time.perf_counter() - start
        proba = _scores_for_gallery(estimator, X_test)
    precision, recall, f1, support = precision_recall_fscore_support(y_test, y_pred, zero_division=0)
    labels = np.unique(np.concatenate([y_test, y_pred]))
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
        "per_class": [
            {"digit": int(d), "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for d, p, r, f, s in zip(labels, precision, recall, f1, support)
        ],
        "confusion_matrix": confusion_matrix(y_test, y_pred).tolist(),
        "confusion_png": str(confusion_png),
        "gallery_png": str(gallery_png),
        "data_sha256": data_sha256,
        "same_data_as_training": data_sha256 == card.get("data_sha256"),
        "same_predictions_as_training": None if trained is None else trained == _predictions_sha256(y_pred),
    }


def compare(
    recipes=None,
    *,
    out_dir="report",
    cv: int | None = None,
    split: str = "official",
    test_size=None,
    seed: int = 42,
    limit: int | None = None,
    n_jobs: int = 1,
    progress: Progress | None = None,
    data=None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train each recipe (default: ``DEFAULT_LINEUP``), save it, and write ``out_dir/index.html``.

    Each model goes to its default model directory. ``cv=None`` uses each
    recipe's default folds. ``on_result`` is called after each recipe.
    """
    from ._report import write_report

    names = list(recipes) if recipes else list(DEFAULT_LINEUP)
    if not names:
        raise InputError("No recipes to compare; name some, e.g. `mnistlab compare logreg knn`.")
    for name in names:
        get_recipe(name)  # fail on a typo before spending minutes on the others
    progress = progress or _noop
    rows, predictions = [], {}
    X_test = y_test = None
    for i, name in enumerate(names, start=1):

        def numbered(message: str, prefix=f"[{i}/{len(names)}] ") -> None:
            progress(prefix + message)  # "[2/6] knn: fitting ..." shows how far a long run has got

        result, _, (X_test, y_test, y_pred) = _fit_and_score(
            name, cv=cv, split=split, test_size=test_size, seed=seed, limit=limit,
            n_jobs=n_jobs, out=None, progress=numbered, data=data,
        )
        rows.append(result)
        predictions[name] = y_pred
        if on_result is not None:
            on_result(result)
    progress(f"writing the report into {out_dir}")
    report = write_report(rows, out_dir, X_test=X_test, y_test=y_test, predictions=predictions)
    for row in rows:
        row["report"] = str(report)
    return rows
