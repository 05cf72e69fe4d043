"""Train, cross-validate and test one recipe on MNIST, and save it.

``train_recipe`` is the lesson in one call: cross-validation accuracies per
fold, a fit on the training set, the test accuracy, timings, and a saved
model directory whose card records everything needed to reproduce it.
``run_recipe`` does the same work for ``compare``, which also needs the test
set and its predictions to draw the report.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split

from mnistlab._processes import joblib_workers_exit_with_parent
from mnistlab.data.load import load_mnist, load_split
from mnistlab.data.pixels import as_rows
from mnistlab.errors import DatasetError, InputError, RecipeError
from mnistlab.lab.options import Progress, RunOptions, callback, check_model_dir, noop
from mnistlab.lab.record import Record, arrays_sha256, json_safe_params, run_metrics, trained_device, tuned_elsewhere
from mnistlab.lab.specs import resolve_recipe_or_spec_file
from mnistlab.models.cnn.parallel import member_runner
from mnistlab.models.files import default_model_dir, save_model
from mnistlab.models.proba import classic_limits, digit_probabilities
from mnistlab.models.recipes import Recipe
from mnistlab.trust.calibration import probability_cut_for
from mnistlab.trust.reader import Reader, load_reader

__all__ = [
    "train_recipe",
    "run_recipe",
    "fit_and_test",
    "load_data",
    "given_arrays",
    "pixels_in_words",
    "thread_limits",
    "TrainTest",
    "Scored",
    "FitTest",
]


@dataclass(frozen=True)
class TrainTest:
    """The arrays of one run and where they came from."""

    X_train: np.ndarray  # (n_train, 784) pixels
    X_test: np.ndarray  # (n_test, 784)
    y_train: np.ndarray  # (n_train,) int labels
    y_test: np.ndarray  # (n_test,)
    sha256: str  # of MNIST's files, or of the four arrays passed from Python
    dataset: str  # "mnist" or "arrays"
    stretched_from: int = 255  # the dataset's own brightest pixel value, if its pixels were stretched to 0-255
    data_dir: str | None = None  # the folder of a dataset given as one (not a registered one): where to find it again


class Scored(NamedTuple):
    """What ``run_recipe`` gives back: the result object, the data, and the test predictions."""

    result: dict
    data: TrainTest
    y_pred: np.ndarray  # (n_test,)


def load_data(options: RunOptions, data=None, *, default_of: str | None = None) -> TrainTest:
    """MNIST split as ``options`` say (or the caller's arrays), with ``options.limit`` applied to the training set;
    ``default_of``: the recipe whose own folds ``options.cv`` is, for ``check_cv``'s sentence."""
    if data is not None:
        X_train, X_test, y_train, y_test = given_arrays(data)
        sha256, dataset = arrays_sha256(X_train, X_test, y_train, y_test), "arrays"
    else:
        bunch = load_mnist("mnist")
        X_train, X_test, y_train, y_test = load_split(
            split=options.split, test_size=options.test_size, seed=options.seed, bunch=bunch
        )
        sha256, dataset = bunch.details["data_sha256"], "mnist"
    options.check_limit(y_train)
    if options.limit is not None and options.limit < len(y_train):
        X_train, _, y_train, _ = train_test_split(
            X_train, y_train, train_size=options.limit, stratify=y_train, random_state=options.seed
        )
    check_classes(y_train, dataset)
    options.check_cv(y_train, default_of)
    return TrainTest(X_train, X_test, y_train, y_test, sha256, dataset)


def given_arrays(data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The caller's ``(X_train, X_test, y_train, y_test)`` as arrays, refused in one sentence where they
    cannot be trained and tested on (scikit-learn would fail in a traceback, or blame the model)."""
    try:
        X_train, X_test, y_train, y_test = (np.asarray(a) for a in data)
    except (TypeError, ValueError):  # not four arrays, or a ragged one
        raise InputError("data must be four arrays, (X_train, X_test, y_train, y_test).") from None
    X_train, X_test = as_rows(X_train), as_rows(X_test)  # images (N, 28, 28) as the rows every recipe reads
    for X, y, part in ((X_train, y_train, "train"), (X_test, y_test, "test")):
        if y.ndim != 1 or X.ndim < 2 or len(y) != len(X):
            held = f"{y.size:,} labels" if y.ndim == 1 else f"its labels in an array of shape {y.shape}"
            raise InputError(
                f"y_{part} of data holds {held} for {len(X) if X.ndim else 0:,} images in X_{part}; "
                f"pass one label per image{'' if y.ndim == 1 else ', in a 1-d array'}."
            )
    if len(X_test) == 0:
        raise InputError("X_test of data holds no images; pass at least one test image, and its label in y_test.")
    pixels = [int(np.prod(X.shape[1:])) for X in (X_train, X_test)]
    if pixels[0] != pixels[1]:
        raise InputError(
            f"X_train of data holds images of {pixels_in_words(pixels[0])} and X_test images of {pixels_in_words(pixels[1])}; "
            "pass test images of the training images' size."
        )
    for y, part in ((y_train, "train"), (y_test, "test")):
        if y.dtype.kind not in "biuf":
            kind = "strings" if y.dtype.kind in "US" else f"{y.dtype} values"
            raise InputError(
                f"y_{part} of data holds {kind}; train_recipe takes class numbers (whole numbers such as 0-9), "
                "so number the classes first."
            )
        if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
            raise InputError(
                f"y_{part} of data holds numbers that are not whole ({y[y != np.round(y)][0]!r}); "
                "pass class numbers such as 0-9."
            )
    return X_train, X_test, y_train, y_test


def pixels_in_words(n: int) -> str:
    """``n`` pixels, with the square image they make: "784 pixels (28 x 28)"."""
    side = int(round(n**0.5))
    return f"{n:,} pixels ({side} x {side})" if side * side == n else f"{n:,} pixels"


def check_classes(y_train, dataset: str) -> None:
    """Refuse training labels of one class: no classifier can learn from them."""
    classes = np.unique(np.asarray(y_train))
    if len(classes) < 2:
        shown = repr(classes[0].item()) if len(classes) else "none"
        if dataset == "arrays":  # passed from Python: there is no labels file
            raise DatasetError(
                f"y_train of data holds {'no labels' if shown == 'none' else f'one class only ({shown})'}; "
                "a classifier needs two or more, so pass training labels of two or more classes."
            )
        raise DatasetError(
            f"The training images of {dataset} hold one class only ({shown}); a classifier needs two or more, "
            "so check the labels file."
        )


def thread_limits(family: str):
    """One BLAS thread and small distance chunks (``classic_limits``) for classic recipes; CNNs keep torch's own.

    Their BLAS work (logistic regression, PCA) is memory-bound, and OpenBLAS's
    spinning threads slow it down several times on a busy machine. A fixed
    thread count also makes the floating-point results independent of the machine.
    """
    return contextlib.nullcontext() if family != "classic" else classic_limits()


def cross_validate(recipe: Recipe, options: RunOptions, X, y) -> tuple[list[float], float]:
    """Per-fold accuracies of ``options.cv``-fold stratified CV (none when it is 0), and the seconds taken."""
    if not options.cv:
        return [], 0.0
    start = time.perf_counter()
    folds = StratifiedKFold(n_splits=options.cv)  # what cross_val_score(cv=K) uses for a classifier
    with warnings.catch_warnings(), joblib_workers_exit_with_parent():
        # The final fit reports non-convergence once; K more copies add nothing.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Folds run in parallel processes; each estimator then runs single-job so the cores are not oversubscribed.
        # A fold's error is raised as the fit's, not as "All the 3 fits failed" with each fold's traceback.
        estimator, jobs = recipe.build(options.seed, 1), options.n_jobs
        scores = cross_val_score(estimator, X, y, cv=folds, n_jobs=jobs, scoring="accuracy", error_score="raise")
    return [float(s) for s in scores], time.perf_counter() - start


def fit(estimator, X, y) -> tuple[float, list[str]]:
    """Fit in place; return the seconds taken and the fit's convergence warnings as sentences."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y)
    seconds = time.perf_counter() - start
    notes: list[str] = []
    for w in caught:  # other warnings are re-issued as they came
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif str(w.message) not in notes:
            notes.append(str(w.message))
    return seconds, notes


class FitTest(NamedTuple):
    """What ``fit_and_test`` gives back: the fitted estimator and what its record needs."""

    estimator: Any
    params: dict  # json_safe_params of the estimator as built, before fitting
    metrics: dict  # run_metrics: CV scores, test accuracy, timings
    notes: list[str]  # the fit's convergence warnings
    y_pred: np.ndarray  # (n_test,)


def fit_and_test(
    recipe: Recipe,
    options: RunOptions,
    d: TrainTest,
    progress: Progress,
    name: str,
    *,
    cv_options: RunOptions | None = None,
    prepare: Callable[[Any], None] | None = None,
) -> FitTest:
    """Cross-validate, build, fit and predict the test set under the recipe's thread limits, timing each step.

    ``cv_options`` (default ``options``) run the cross-validation; ``prepare``
    adjusts the built estimator before its parameters are recorded and it is
    fitted. Progress messages start with ``name``.
    """
    with thread_limits(recipe.family):
        if options.cv:
            progress(f"{name}: {options.cv}-fold cross-validation on {len(d.y_train):,} images")
        cv_scores, cv_seconds = cross_validate(
            recipe, options if cv_options is None else cv_options, d.X_train, d.y_train
        )
        estimator = recipe.build(options.seed, options.n_jobs)
        if prepare is not None:
            prepare(estimator)
        params = json_safe_params(estimator)
        progress(f"{name}: fitting on {len(d.y_train):,} images")
        fit_seconds, notes = fit(estimator, d.X_train, d.y_train)
        progress(f"{name}: predicting {len(d.y_test):,} test images")
        start = time.perf_counter()
        y_pred = np.asarray(estimator.predict(d.X_test))
        predict_seconds = time.perf_counter() - start
    if y_pred.shape != np.shape(d.y_test):
        raise RecipeError(
            f"{name}: predict returned shape {y_pred.shape} for {len(d.y_test):,} test images; "
            "it must return one label per image."
        )
    unknown = _unknown_labels(y_pred, d.y_train)
    if unknown.size:
        raise RecipeError(
            f"{name}: predict returned labels the training labels do not hold (such as {unknown[:1].tolist()[0]!r}); "
            f"it must return labels like those it was fitted on ({', '.join(map(str, np.unique(d.y_train)[:10]))})."
        )
    if y_pred.dtype.kind == "f":  # 3.0 for 3: the labels as the training labels hold them, which index class names
        y_pred = y_pred.astype(np.asarray(d.y_train).dtype)
    seconds = {"fit_seconds": fit_seconds, "predict_seconds": predict_seconds, "cv_seconds": cv_seconds}
    metrics = run_metrics(estimator, cv_scores, seconds, n_train=len(d.y_train), y_test=d.y_test, y_pred=y_pred)
    return FitTest(estimator, params, metrics, notes, y_pred)


def _unknown_labels(y_pred: np.ndarray, y_train) -> np.ndarray:
    """The predictions that are no training label (a string for a number, 2.4 for a class, True for 1)."""
    if y_pred.dtype.kind not in "biuf" or (y_pred.dtype.kind == "b") != (np.asarray(y_train).dtype.kind == "b"):
        return y_pred
    return y_pred[~np.isin(y_pred, np.unique(y_train))]


def reader_for(d: TrainTest) -> Reader | None:
    """The shipped reader whose checks a model of these digits answers with; None for other data.

    Loaded (and its files verified) before anything is fitted: a damaged
    install fails in a second, not after minutes of training.
    """
    X_test = np.asarray(d.X_test)
    labels = np.unique(np.concatenate([np.asarray(d.y_train).ravel(), np.asarray(d.y_test).ravel()]))
    # Booleans (the lesson's y_train == 5) are no digits, though np.isin takes False and True for 0 and 1.
    if X_test.ndim != 2 or X_test.shape[1] != 784 or labels.dtype.kind == "b" or not np.isin(labels, range(10)).all():
        return None  # not 28x28 digits: the reader's checks do not apply
    return load_reader()


def calibrate(estimator, d: TrainTest, reader: Reader | None, progress: Progress, name: str) -> dict | None:
    """The probability cut for "not sure" answers, from the run's own test digits (None without a reader)."""
    if reader is None:
        return None
    X_test = np.asarray(d.X_test)
    progress(f'{name}: calibrating when to say "not sure" on {len(X_test):,} test digits')
    cut = probability_cut_for(
        lambda images: digit_probabilities(estimator, images.reshape(len(images), 784)),
        reader,
        X_test.reshape(-1, 28, 28),
        "the run's test set",
    )
    return cut.to_json()


def run_recipe(
    recipe_name: str | os.PathLike[str], options: RunOptions, *, out=None, progress: Progress | None = None, data=None
) -> Scored:
    """Cross-validate, fit, test and save one recipe (to ``out``, default ``default_model_dir``).

    ``recipe_name`` is a recipe or the path of a spec file ``mnistlab sweep``
    wrote (``*.json``): its base recipe with the spec's parameters set, named,
    saved and recorded under the spec's name; the card and the result also
    hold the file (``spec``), and the card its sha256 (``code_sha256``), as
    ``compare`` records them. A bad spec file fails here, before any data loads.
    """
    options.check_arrays(data)
    contender = resolve_recipe_or_spec_file(recipe_name)
    recipe = contender.recipe
    default_of = recipe.name if options.cv is None else None  # its own folds: said as such if too many
    options = options.for_recipe(recipe)
    # Checked before minutes of training, not when saving after them.
    model_dir = check_model_dir(out if out is not None else default_model_dir(recipe.name), "out")
    progress = callback(progress)
    progress(f"{recipe.name}: loading data")
    d = load_data(options, data, default_of=default_of)
    options.check_fit_sizes(recipe, d.y_train, int(np.prod(np.shape(d.X_train)[1:])))
    reader = reader_for(d)
    run = fit_and_test(
        recipe,
        options,
        d,
        progress,
        recipe.name,
        prepare=lambda estimator: _configure_cnn(estimator, recipe.name, options.target, progress),
    )
    calibration = calibrate(run.estimator, d, reader, progress, recipe.name)
    device = trained_device(run.estimator)
    notes = [*run.notes, *tuned_elsewhere(contender, d.dataset, d.sha256)]  # a sweep's choice on other data: said
    record = Record(recipe, options, d.dataset, d.sha256, run.params, run.metrics, notes, calibration, device=device)
    progress(f"{recipe.name}: saving to {model_dir}")
    card, from_spec = record.card(), {}
    if contender.tuned is not None:  # a spec file: which one, and what it set on which recipe
        card.update(spec=contender.spec, code_sha256=contender.code_sha256)
        from_spec = {"spec": contender.spec, "tuned": contender.tuned}
    save_model(run.estimator, model_dir, card=card)
    return Scored({**record.result(model_dir), **from_spec}, d, run.y_pred)


def _configure_cnn(estimator, name: str, target: float | None, progress: Progress) -> None:
    """Pass ``target`` to estimators that take one, and show per-epoch progress of CNNs."""
    params = estimator.get_params()
    if target is not None:
        estimator.set_params(target=target)
    if "callback" not in params or progress is noop:
        return

    members, goal = params["n_members"], estimator.get_params()["target"]
    # Members side by side: in local processes (n_jobs), or as cluster tasks (a runner installed for this block).
    parallel = members > 1 and (params.get("n_jobs", 1) != 1 or member_runner() is not None)
    done = []

    def on_epoch(row: dict) -> None:
        # Called after each epoch. The message names the step now starting, so its
        # finished line shows that step's time, and carries the stats of the epoch just done.
        stats = f"epoch {row['epoch']}: loss {row['loss']:.4f}, train acc {row['train_accuracy']:.4f}"
        if row["val_accuracy"] is not None:
            stats += f", held-out acc {row['val_accuracy']:.4f}"
        if parallel:  # members run side by side: rows interleave, so count epochs instead
            done.append(row)
            progress(
                f"{name}: {len(done)}/{members * row['epochs']} member epochs done (member {row['member'] + 1} {stats})"
            )
            return
        member, epoch = row["member"], row["epoch"] + 1
        reached = row["val_accuracy"] is not None and row["val_accuracy"] >= goal
        if epoch > row["epochs"] or reached:
            member, epoch = member + 1, 1
        who = f"member {member + 1}/{members} " if members > 1 else ""
        step = f"{who}epoch {epoch}/{row['epochs']}" if member < members else "training done"
        progress(f"{name}: {step} ({stats})")

    estimator.set_params(callback=on_epoch)


def train_recipe(
    recipe: str | os.PathLike[str],
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
    """Cross-validate, fit, test and save one recipe (or a sweep's spec file); return the result object.

    ``recipe`` is a name (``mnistlab recipes``) or a spec file ``mnistlab sweep``
    wrote (see ``run_recipe``). ``cv=None`` uses the recipe's default folds (3, or 0 = skipped for slow
    recipes). ``limit`` keeps a stratified subset of that many training images.
    ``data=(X_train, X_test, y_train, y_test)`` replaces loading MNIST.
    The model is saved to ``out`` or ``default_model_dir(name)``, ``name`` the
    recipe's or the one a spec file holds (its ``"name"``). ``target``
    (CNN recipes) stops training once a held-out accuracy reaches it; CNN
    results also hold ``epochs`` and ``train_seconds``. See ``RunOptions``.
    """
    options = RunOptions(cv=cv, split=split, test_size=test_size, seed=seed, limit=limit, n_jobs=n_jobs, target=target)
    return run_recipe(recipe, options, out=out, progress=progress, data=data).result
