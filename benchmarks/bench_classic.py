"""The classic lesson as plain scikit-learn beside mnistlab's recipes, in one run.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_classic.py \
        [--part lesson|recipes|all] [--lesson sgd-hinge ...] [--recipes logreg knn ...] [--trials 1] [--n-jobs 1]

Part "lesson": the lesson's code written out with scikit-learn only
(``SGDClassifier(loss=..., random_state=42)`` on raw pixels, ``cross_val_score(cv=3)``,
fit on the first 60,000, score on the last 10,000; then the KNN it suggests)
and ``mnistlab.train_recipe`` for ``sgd-hinge``, ``sgd-log`` and ``knn`` with
the same settings. Prints both accuracies (they must be identical) and
mnistlab's overhead as a time ratio (ours / plain, wall clock, CV + fit + test).

Part "recipes": every classic recipe on the official split, no CV: test
accuracy, fit and predict seconds, model size; mean ± stdev over --trials.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one
from mnistlab import load_mnist
from mnistlab.errors import RecipeError
from mnistlab.lab.train import train_recipe
from mnistlab.models.recipes import get_recipe, list_recipes

warnings.simplefilter("ignore", ConvergenceWarning)  # the lesson's SGD stops at max_iter; that is the point


def lesson(X_train, y_train, X_test, y_test, model, cv: int, n_jobs: int):
    """The lesson's code, verbatim apart from n_jobs (1 = the lesson's default) for CV folds and model."""
    start = time.perf_counter()
    scores = cross_val_score(model, X_train, y_train, cv=cv, scoring="accuracy", n_jobs=n_jobs) if cv else np.array([])
    model.fit(X_train, y_train)
    accuracy = model.score(X_test, y_test)
    return scores, accuracy, time.perf_counter() - start


def part_lesson(bunch, args, out_root: Path) -> None:
    X, y = bunch.data, bunch.target
    X_train, X_test, y_train, y_test = X[:60000], X[60000:], y[:60000], y[60000:]
    # n_jobs as mnistlab gets it, so that both sides run the same parallel work
    # (SGD's one-vs-rest classifiers draw their seeds up front: same scores either way).
    n_jobs = args.n_jobs
    cases = [
        ("sgd-hinge", lambda: SGDClassifier(loss="hinge", random_state=42, n_jobs=n_jobs), 3),
        ("sgd-log", lambda: SGDClassifier(loss="log_loss", random_state=42, n_jobs=n_jobs), 3),
        # CV of KNN on 784 raw pixels costs ~4x its test pass; the lesson only scores it.
        ("knn", lambda: KNeighborsClassifier(n_neighbors=4, weights="distance", n_jobs=n_jobs), 0),
    ]
    print("\n== the lesson (plain scikit-learn) against mnistlab train_recipe, same process ==")
    print(
        f"{'recipe':<10} {'plain CV scores':<28} {'plain test':>10} {'ours test':>10} {'same':>5} "
        f"{'plain s':>8} {'ours s':>8} {'ratio':>6}"
    )
    for name, make, cv in cases:
        if args.lesson and name not in args.lesson:
            continue
        for trial in range(args.trials):
            scores, acc, plain_s = lesson(X_train, y_train, X_test, y_test, make(), cv, args.n_jobs)
            start = time.perf_counter()
            row = train_recipe(name, cv=cv, seed=42, n_jobs=args.n_jobs, out=out_root / name)
            ours_s = time.perf_counter() - start
            same = row["test_accuracy"] == acc and np.array_equal(np.array(row["cv_scores"]), scores)
            cv_text = np.array2string(scores, precision=5, separator=", ") if cv else "(not run)"
            print(
                f"{name:<10} {cv_text:<28} {acc:>10.4f} {row['test_accuracy']:>10.4f} {str(same):>5} "
                f"{plain_s:>8.1f} {ours_s:>8.1f} {ours_s / plain_s:>6.3f}",
                flush=True,
            )
            print(
                f"{'':<10} ours: cv {row['cv_seconds']:.1f} s, fit {row['fit_seconds']:.1f} s, "
                f"predict {row['predict_seconds']:.2f} s, trial {trial + 1}/{args.trials}",
                flush=True,
            )


def part_recipes(args, out_root: Path) -> None:
    names = args.recipes or [r.name for r in list_recipes() if r.family == "classic"]
    print(
        f"\n== recipes on the official split (60,000 / 10,000), no CV, n_jobs={args.n_jobs}, {args.trials} trial(s) =="
    )
    print(f"{'recipe':<12} {'test acc':>9} {'fit s':>16} {'predict s':>16} {'fit+predict':>12} {'model size':>11}")
    for name in names:
        get_recipe(name)
        accs, fits, preds = [], [], []
        for _ in range(args.trials):
            row = train_recipe(name, cv=0, seed=42, n_jobs=args.n_jobs, out=out_root / name)
            accs.append(row["test_accuracy"])
            fits.append(row["fit_seconds"])
            preds.append(row["predict_seconds"])

        def ms(v):
            return f"{statistics.mean(v):7.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:5.1f}"

        acc = f"{statistics.mean(accs):.4f}" + ("" if len(set(accs)) == 1 else "*")
        print(
            f"{name:<12} {acc:>9} {ms(fits):>16} {ms(preds):>16} {statistics.mean(fits) + statistics.mean(preds):>12.1f} "
            f"{row['model_size_bytes'] / 1e6:>9.1f} MB",
            flush=True,
        )


LESSON_CASES = ("sgd-hinge", "sgd-log", "knn")


def check_names(ap: argparse.ArgumentParser, args) -> None:
    """Refuse, before anything runs, a --recipes name that is no recipe (its RecipeError came after the
    lesson's minutes of training) and a --lesson name that is no case of the lesson (nothing ran)."""
    for name in args.lesson or []:
        if name not in LESSON_CASES:
            ap.error(f"argument --lesson: {name!r} is no case of the lesson; choose from {', '.join(LESSON_CASES)}")
    for name in args.recipes or []:
        try:
            get_recipe(name)
        except RecipeError as exc:
            ap.error(f"argument --recipes: {exc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("lesson", "recipes", "all"), default="all")
    ap.add_argument("--recipes", nargs="*", help="recipes for part 'recipes' (default: every classic recipe)")
    ap.add_argument("--lesson", nargs="*", help="cases for part 'lesson' (default: sgd-hinge sgd-log knn)")
    ap.add_argument("--trials", type=at_least_one, default=1)
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args()
    check_names(ap, args)
    print(
        f"machine: {machine.describe()}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}; load average at start {os.getloadavg()[0]:.1f}"
    )
    bunch = load_mnist("mnist")
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("lesson", "all"):
            part_lesson(bunch, args, Path(tmp))
        if args.part in ("recipes", "all"):
            part_recipes(args, Path(tmp))
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
