"""The statistics of a comparison: accuracy intervals over seeds, McNemar's exact test, Holm's correction.

Two models tested on the same images are compared pair by pair: only the
images one gets right and the other wrong (the discordant pairs) carry
evidence. McNemar's exact test asks whether those split more unevenly than
fair coin flips would (statsmodels); Holm's step-down method keeps the chance
of any false "better"/"worse" in a family of tests at 5% (statsmodels). With
several seeds the discordant pairs of all seeds are pooled.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

__all__ = ["ALPHA", "accuracy_summary", "paired_test", "holm", "verdict", "comparisons", "significance_matrix"]

ALPHA = 0.05
NOT_DISTINGUISHABLE = "not distinguishable at 5%"


def accuracy_summary(accuracies: Sequence[float], n_test: int) -> dict:
    """Mean, standard deviation and 95% interval of test accuracies, one per seed.

    Several seeds: Student's t interval of the mean over seeds (how much the
    result moves with the seed, the split and the subset). One seed, or seeds
    that all give the same accuracy: the Wilson interval of one accuracy
    measured on ``n_test`` images (how much it moves with the test sample); the
    standard deviation of one seed is undefined (None).
    """
    acc = np.asarray(accuracies, dtype=float)
    # Seeds that agree are found by equality, not by std == 0: the mean of equal floats may round (std 1e-16).
    if bool(np.all(acc == acc[0])):  # one seed, or a deterministic model on the same data: the test sample's spread
        mean = float(acc[0])
        low, high = proportion_confint(round(mean * n_test), n_test, alpha=ALPHA, method="wilson")
        return {"mean": mean, "std": 0.0 if len(acc) > 1 else None, "ci95": [float(low), float(high)]}
    mean, std = float(acc.mean()), float(acc.std(ddof=1))
    low, high = sps.t.interval(1 - ALPHA, len(acc) - 1, loc=mean, scale=std / math.sqrt(len(acc)))
    return {"mean": mean, "std": std, "ci95": [max(0.0, float(low)), min(1.0, float(high))]}


def paired_test(y_true: Sequence[np.ndarray], pred_a: Sequence[np.ndarray], pred_b: Sequence[np.ndarray]) -> dict:
    """McNemar's exact test of a against b over the pooled pairs of every seed (lists of arrays, one per seed).

    Returns n (pairs), a_only / b_only (images only a / only b got right),
    p_value, diff (accuracy of a minus b) and diff_ci95.
    """
    truth = np.concatenate([np.asarray(y) for y in y_true])
    right_a = np.concatenate([np.asarray(p) for p in pred_a]) == truth
    right_b = np.concatenate([np.asarray(p) for p in pred_b]) == truth
    n = len(truth)
    both, a_only = int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))
    b_only, neither = int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))
    # No discordant pair: nothing tells the two apart (the binomial test of 0 of 0 is p = 1).
    p = 1.0 if a_only + b_only == 0 else float(mcnemar([[both, a_only], [b_only, neither]], exact=True).pvalue)
    return {
        "n": n,
        "a_only": a_only,
        "b_only": b_only,
        "p_value": min(1.0, p),
        "diff": (a_only - b_only) / n,
        "diff_ci95": _diff_interval(a_only, b_only, n),
    }


def _diff_interval(a_only: int, b_only: int, n: int) -> list[float]:
    """95% interval of the accuracy difference, given the discordant pairs (the interval McNemar's test inverts).

    The difference is (a_only + b_only) / n * (2 pi - 1), pi being the share of
    discordant pairs that a wins; pi's Clopper-Pearson interval maps onto it, so
    the interval leaves out 0 exactly when the uncorrected exact test rejects.
    """
    m = a_only + b_only
    if m == 0:
        return [0.0, 0.0]
    low, high = proportion_confint(a_only, m, alpha=ALPHA, method="beta")
    return [m / n * (2 * float(low) - 1), m / n * (2 * float(high) - 1)]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values of one family of tests (same order)."""
    if not len(p_values):
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]


def verdict(diff: float, p_holm: float) -> str:
    """ "better" / "worse" (a against b) when the corrected p is under 5%, else "not distinguishable at 5%"."""
    if p_holm < ALPHA and diff != 0:
        return "better" if diff > 0 else "worse"
    return NOT_DISTINGUISHABLE


def _family(pairs: list[tuple[str, str]], against: str, dataset: str, y_true, preds: dict) -> list[dict]:
    """Test each (a, b) pair and Holm-correct them as one family."""
    tests = [paired_test(y_true, preds[a], preds[b]) for a, b in pairs]
    adjusted = holm([t["p_value"] for t in tests])
    return [
        {"a": a, "b": b, "dataset": dataset, "against": against, **t, "p_holm": q, "verdict": verdict(t["diff"], q)}
        for (a, b), t, q in zip(pairs, tests, adjusted)
    ]


def comparisons(
    dataset: str, means: dict[str, float], y_true: list[np.ndarray], preds: dict, baseline: str | None = None
) -> list[dict]:
    """Every model against the best one (highest mean accuracy) and against ``baseline``, each family Holm-corrected.

    ``preds`` maps a model to its predictions per seed, in the order of ``y_true``.
    """
    best = max(means, key=lambda m: means[m])
    if baseline == best:
        return _family([(m, best) for m in means if m != best], "best and baseline", dataset, y_true, preds)
    out = _family([(m, best) for m in means if m != best], "best", dataset, y_true, preds)
    if baseline is not None:
        out += _family([(m, baseline) for m in means if m != baseline], "baseline", dataset, y_true, preds)
    return out


def significance_matrix(names: list[str], y_true: list[np.ndarray], preds: dict) -> dict:
    """Every pair of models tested, Holm-corrected across all pairs: ``{(a, b): test}`` both ways round."""
    pairs = list(itertools.combinations(names, 2))
    out = {}
    for row in _family(pairs, "each other", "", y_true, preds):
        a, b = row["a"], row["b"]
        out[(a, b)] = row
        flipped = {"diff": -row["diff"], "diff_ci95": [-row["diff_ci95"][1], -row["diff_ci95"][0]]}
        out[(b, a)] = {**row, "a": b, "b": a, **flipped, "verdict": verdict(-row["diff"], row["p_holm"])}
    return out
