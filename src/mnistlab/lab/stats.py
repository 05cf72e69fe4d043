"""The statistics of a comparison: accuracy intervals over seeds, paired tests, Holm's correction.

Two models tested on the same images are compared pair by pair: only the
images one gets right and the other wrong (the discordant pairs) carry
evidence. With one seed, McNemar's exact test asks whether those split more
unevenly than fair coin flips would (statsmodels). With several seeds the
same test images recur in every seed (the official split), so their pairs are
not pooled as if they were new images: the mean difference over the seeds is
tested with the two uncertainties it has, how it moves from seed to seed and
how it would move with another test sample (``_spread``). Holm's step-down
method keeps the chance of any false "better"/"worse" in a family of tests at
5% (statsmodels).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

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

    One seed, or seeds that all give the same accuracy: the Wilson interval of
    one accuracy measured on ``n_test`` images (how much it moves with the test
    sample); the standard deviation of one seed is undefined (None). Several
    seeds: the mean's interval with both of its uncertainties (``_spread``):
    how much it moves with the seed, the split and the subset, and how much it
    would move with another test sample (a seed average on the same test
    images is no surer of them than one seed is).
    """
    acc = np.asarray(accuracies, dtype=float)
    # Seeds that agree are found by equality, not by std == 0: the mean of equal floats may round (std 1e-16).
    if bool(np.all(acc == acc[0])):  # one seed, or a deterministic model on the same data: the test sample's spread
        mean = float(acc[0])
        low, high = proportion_confint(round(mean * n_test), n_test, alpha=ALPHA, method="wilson")
        # Rounded to 12 places: a perfect score's upper bound is 1, not 0.9999999999999999.
        return {
            "mean": mean,
            "std": 0.0 if len(acc) > 1 else None,
            "ci95": [round(float(low), 12), round(float(high), 12)],
        }
    mean, std = float(acc.mean()), float(acc.std(ddof=1))
    half = _spread(std, len(acc), mean * (1 - mean) / n_test).half_width
    return {"mean": mean, "std": std, "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}


class _Spread(NamedTuple):
    se: float  # standard error of a mean over seeds
    df: float  # its degrees of freedom (inf: the test sample's part alone)

    @property
    def half_width(self) -> float:
        return float(sps.t.ppf(1 - ALPHA / 2, self.df)) * self.se

    def p_value(self, estimate: float) -> float:
        return 1.0 if self.se == 0 else float(2 * sps.t.sf(abs(estimate) / self.se, self.df))


def _spread(seed_std: float, seeds: int, sample_variance: float) -> _Spread:
    """The uncertainty of a mean over ``seeds`` seeds whose values spread by ``seed_std``, each measured on a
    test sample with variance ``sample_variance``.

    The test sample's part is not divided by the seeds: with the official split
    every seed is tested on the same images (with ``--split random``, on other
    images, and the interval is wider than it need be). The seeds' part has
    ``seeds - 1`` degrees of freedom, the sum Welch-Satterthwaite's.
    """
    between = seed_std**2 / seeds
    se = math.sqrt(between + sample_variance)
    df = math.inf if between == 0 else (between + sample_variance) ** 2 * (seeds - 1) / between**2
    return _Spread(se, df)


def paired_test(y_true: Sequence[np.ndarray], pred_a: Sequence[np.ndarray], pred_b: Sequence[np.ndarray]) -> dict:
    """Model a against model b on the same images, over every seed (lists of arrays, one per seed).

    Returns n (pairs, all seeds), a_only / b_only (images only a / only b got
    right, all seeds), test, p_value, diff (accuracy of a minus b, the mean
    over seeds) and diff_ci95 (not corrected for the family, as p_value).
    One seed, or seeds whose labels and predictions are all the same:
    McNemar's exact test and the interval it inverts. Otherwise the t test of
    the mean difference over the seeds (``_spread``) and its interval.
    """
    seeds = [_discordant(y, a, b) for y, a, b in zip(y_true, pred_a, pred_b)]
    n, a_only, b_only = (sum(s[i] for s in seeds) for i in range(3))
    common = {"n": n, "a_only": a_only, "b_only": b_only}
    if len(seeds) == 1 or _repeated(y_true, pred_a, pred_b):
        return {**common, **_exact(*seeds[0])}
    diffs = np.array([(a - b) / m for m, a, b in seeds])
    # Each seed's difference is a mean of n values in {-1, 0, 1}: its test-sample variance.
    sample_variance = float(np.mean([((a + b) / m - ((a - b) / m) ** 2) / m for m, a, b in seeds]))
    spread = _spread(float(diffs.std(ddof=1)), len(seeds), sample_variance)
    diff = float(diffs.mean())
    if spread.se == 0:
        # Every image of every seed alike: no discordant pair anywhere, or every image won by the same model.
        # Nothing varies, so there is no t; the same outcome in every seed is one seed's evidence, as for
        # repeated seeds: the exact test of the seed with the fewest images.
        exact = _exact(*min(seeds))  # no discordant pair: p = 1, the difference 0 and +-u of 0 in n
        return {**common, **exact, "test": "McNemar exact" if a_only + b_only else "t over seeds"}
    half = spread.half_width
    return {
        **common,
        "test": "t over seeds",
        "p_value": spread.p_value(diff),
        "diff": diff,
        "diff_ci95": [diff - half, diff + half],
    }


def _exact(n: int, a_only: int, b_only: int) -> dict:
    """McNemar's exact test of one seed's discordant pairs, its difference and the interval it inverts."""
    # No discordant pair: nothing tells the two apart (the binomial test of 0 of 0 is p = 1).
    p = 1.0 if a_only + b_only == 0 else _mcnemar_exact(a_only, b_only)
    return {
        "test": "McNemar exact",
        "p_value": min(1.0, p),
        "diff": (a_only - b_only) / n,
        "diff_ci95": _diff_interval(a_only, b_only, n),
    }


def _discordant(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(pairs, only a right, only b right) of one seed."""
    right_a, right_b = np.asarray(a) == np.asarray(y), np.asarray(b) == np.asarray(y)
    return len(right_a), int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def _repeated(y_true: Sequence[np.ndarray], pred_a: Sequence[np.ndarray], pred_b: Sequence[np.ndarray]) -> bool:
    """Whether every seed repeats the first one (deterministic models on the same images): one seed's evidence."""
    return all(
        np.array_equal(y, y_true[0]) and np.array_equal(a, pred_a[0]) and np.array_equal(b, pred_b[0])
        for y, a, b in zip(y_true, pred_a, pred_b)
    )


def _mcnemar_exact(a_only: int, b_only: int) -> float:
    """McNemar's exact test (the binomial test of the discordant pairs) as statsmodels computes it."""
    return float(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)


def _diff_interval(a_only: int, b_only: int, n: int) -> list[float]:
    """95% interval of the accuracy difference, given one seed's discordant pairs (the interval McNemar's test
    inverts).

    The difference is (a_only + b_only) / n * (2 pi - 1), pi being the share of
    discordant pairs that a wins; pi's Clopper-Pearson interval maps onto it, so
    the interval leaves out 0 exactly when the uncorrected exact test rejects.
    With no discordant pair the difference is 0 on these images, not
    everywhere: the interval is +-u, u the Clopper-Pearson bound of a share of
    discordant pairs that came out 0 of n.
    """
    m = a_only + b_only
    if m == 0:
        u = float(proportion_confint(0, n, alpha=ALPHA, method="beta")[1])
        return [-u, u]
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
        flipped = {
            "diff": -row["diff"],
            "diff_ci95": [-row["diff_ci95"][1], -row["diff_ci95"][0]],
            "a_only": row["b_only"],
            "b_only": row["a_only"],
        }
        out[(b, a)] = {**row, "a": b, "b": a, **flipped, "verdict": verdict(-row["diff"], row["p_holm"])}
    return out
