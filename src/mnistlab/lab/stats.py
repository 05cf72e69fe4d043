"""The statistics of a comparison: accuracy intervals over seeds, paired tests, Holm's correction.

Two models tested on the same images are compared pair by pair: only the
images one gets right and the other wrong (the discordant pairs) carry
evidence. With one seed, McNemar's exact test asks whether those split more
unevenly than fair coin flips would (statsmodels), and the difference's
interval is Tango's score interval, widened to the exact one the test inverts
where that is wider. With several seeds the mean difference over the seeds is
tested with the uncertainty it has as both the images and the seeds vary: with
the official split the same test images recur in every seed, so their pairs
are not pooled as if they were new images, and a seed's own noise is not
counted as the test sample's; with a random split the dataset every seed
draws its test set from is itself a sample (``_difference_spread``). Holm's
step-down method keeps the chance of any false "better"/"worse" in a family of tests at 5%
(statsmodels); the comparisons with the best model are a family with every
pair, since which model is best was read off the same data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from mnistlab.errors import InputError
from mnistlab.lab.mcnemar import ALPHA, exact_test
from mnistlab.lab.statinputs import checked_answers, checked_pool
from mnistlab.lab.wilson import wilson_interval

__all__ = ["ALPHA", "accuracy_summary", "paired_test", "holm", "verdict", "comparisons", "significance_matrix"]

NOT_DISTINGUISHABLE = "not distinguishable at 5%"
# The seeds' part of a spread is taken at the bound its estimate falls in the lowest quarter of (``_spread``).
_SEEDS_PART_QUANTILE = 0.25


def accuracy_summary(
    accuracies: Sequence[float],
    n_test: int,
    pool: int | None = None,
    *,
    y_true: Sequence[np.ndarray] | None = None,
    y_pred: Sequence[np.ndarray] | None = None,
) -> dict:
    """Mean, standard deviation and 95% interval of test accuracies, one per seed.

    One seed, or seeds that all give the same accuracy: the Wilson interval of
    one accuracy measured on ``n_test`` images (how much it moves with the test
    sample); the standard deviation of one seed is undefined (None). Several
    seeds: the mean's interval with both of its uncertainties (``_spread``):
    how much it moves with the seed, the split and the subset, and how much it
    would move with another test sample (a seed average on the same test
    images is no surer of them than one seed is). ``pool``: the number of
    images each seed drew its test set from (``--split random``): the seeds'
    spread then holds the test samples' own, and what remains is how far that
    pool's accuracy may lie from the population's, p(1 - p) / pool at most.
    With p(1 - p) / n_test there, 5 seeds testing 360 of 1,797 images covered
    the true accuracy in 100% of simulated comparisons, not 95%. ``y_true`` and
    ``y_pred``: each seed's labels and predictions, the same test images in
    every seed (the official split): the test sample's part is then its
    images' own (``_images_part`` of the seeds x images table of answers
    right), not p(1 - p) / n_test, which counts each seed's coin flips again
    (in ``benchmarks/bench_stats.py`` 98.7-99.8% coverage, 94-96% with it).
    """
    acc = _checked_accuracies(accuracies, n_test)
    rights = checked_answers(y_true, y_pred, len(acc), n_test)
    checked_pool(pool, n_test)
    # Seeds that agree are found by equality, not by std == 0: the mean of equal floats may round (std 1e-16).
    if bool(np.all(acc == acc[0])):  # one seed, or a deterministic model on the same data: the test sample's spread
        mean = float(acc[0])
        return {
            "mean": mean,
            "std": 0.0 if len(acc) > 1 else None,
            "ci95": wilson_interval(round(mean * n_test), n_test),
        }
    mean, std = _mean(acc, n_test), float(acc.std(ddof=1))
    # The test sample's part is not divided by the seeds: with the official split every seed is tested on the same
    # images. p(1 - p) / n bounds it from above (accuracies alone cannot tell an image's share from a seed's).
    sample = mean * (1 - mean) / (n_test if pool is None else pool)
    if pool is None and y_true is not None and rights is not None:
        if all(np.array_equal(y, y_true[0]) for y in y_true):  # the same test images: their own part, from answers
            sample = _images_part(np.stack(rights))
    half = _spread(std**2 / len(acc), len(acc), sample).half_width
    return {"mean": mean, "std": std, "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}


def _checked_accuracies(accuracies: Sequence[float], n_test: int) -> np.ndarray:
    """The accuracies as an array, or one sentence on why they cannot be summed up."""
    acc = np.asarray(accuracies, dtype=float).ravel()
    if not len(acc):
        raise InputError("accuracies is empty; give one test accuracy per seed.")
    if not np.all((acc >= 0) & (acc <= 1)):  # NaN fails both
        raise InputError(f"accuracies must lie between 0 and 1, got {acc.tolist()}; give shares, not percents.")
    whole = isinstance(n_test, (int, float, np.number)) and not isinstance(n_test, bool) and float(n_test).is_integer()
    if not whole or n_test < 1:
        raise InputError(f"n_test must be the number of test images, a whole number of at least 1, got {n_test!r}.")
    return acc


def _mean(acc: np.ndarray, n_test: int) -> float:
    """The mean of the accuracies: the images right over all seeds over the answers, where each accuracy is a count
    of ``n_test`` images, so that models right as often over the seeds tie (a float mean of [0.9169, 0.9111, 0.9248]
    is 0.9176000000000001, of [0.9176] * 3 0.9176, and only the first was marked best); else the float mean."""
    counts = acc * n_test
    right = np.round(counts)
    if np.all(np.abs(counts - right) < 1e-6):
        return float(right.sum() / (len(acc) * n_test))
    return float(acc.mean())


class _Spread(NamedTuple):
    se: float  # standard error of a mean over seeds
    df: float  # its degrees of freedom (inf: the test sample's part alone)

    @property
    def half_width(self) -> float:
        return float(sps.t.ppf(1 - ALPHA / 2, self.df)) * self.se

    def p_value(self, estimate: float) -> float:
        return 1.0 if self.se == 0 else float(2 * sps.t.sf(abs(estimate) / self.se, self.df))


def _spread(seeds_part: float, seeds: int, sample_part: float) -> _Spread:
    """The uncertainty of a mean over ``seeds`` seeds: ``seeds_part``, the variance the seeds' spread gives it
    (``seeds - 1`` degrees of freedom), plus ``sample_part``, the test sample's, taken as known.

    The degrees of freedom are Satterthwaite's with the seeds' part at the
    bound its estimate falls in the lowest quarter of. From the estimate
    itself (Welch's rule), a few seeds that happen to agree make the part
    small and the degrees of freedom large at once: with 2 seeds up to 12% of
    equal models came out "better" or "worse", with 3 up to 8%; with the
    bound, at most 6% (simulated over every share of the seeds' part).
    """
    se = math.sqrt(seeds_part + sample_part)
    if seeds_part == 0 or math.isinf(sample_part):
        return _Spread(se, math.inf)
    bound = seeds_part * (seeds - 1) / float(sps.chi2.ppf(_SEEDS_PART_QUANTILE, seeds - 1))
    return _Spread(se, (bound + sample_part) ** 2 * (seeds - 1) / bound**2)


def paired_test(
    y_true: Sequence[np.ndarray],
    pred_a: Sequence[np.ndarray],
    pred_b: Sequence[np.ndarray],
    *,
    pool: int | None = None,
) -> dict:
    """Model a against model b on the same images, over every seed (lists of arrays, one per seed).

    Returns n (pairs, all seeds), a_only / b_only (images only a / only b got
    right, all seeds), test, p_value, diff (accuracy of a minus b, the mean
    over seeds) and diff_ci95 (not corrected for the family, as p_value).
    One seed, or seeds of the same images each won by the same model (or by
    neither) in every seed: McNemar's exact test and its interval (``mcnemar.exact_test``). Otherwise the
    t test of the mean difference over the seeds (``_difference_spread``) and
    its interval. ``pool``: the number of images each seed drew its test set
    from anew (``--split random``: the whole dataset); None where the seeds
    share their test images (the official split) or each tested on new ones.
    """
    rights = _rights(y_true, pred_a, pred_b)
    checked_pool(pool, max(len(ra) for ra, _ in rights))
    seeds = [(len(ra), int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))) for ra, rb in rights]
    n, a_only, b_only = (sum(s[i] for s in seeds) for i in range(3))
    common = {"n": n, "a_only": a_only, "b_only": b_only}
    # Per image: 1 where only a is right, -1 where only b is, 0 where both or neither are.
    outcomes = [ra.astype(np.int8) - rb.astype(np.int8) for ra, rb in rights]
    if len(seeds) == 1 or _repeated(y_true, outcomes):
        return {**common, **exact_test(*seeds[0])}
    same_images = pool is None and all(np.array_equal(y, y_true[0]) for y in y_true)
    spread = _difference_spread(outcomes, same_images, pool)
    # Seeds of as many images: the mean of their differences is the pairs only a won less those only b won, over
    # every pair, so models right as often differ by 0, not by a float mean's -9e-21 (shown as "-0.00").
    same_size = len({len(o) for o in outcomes}) == 1
    diff = (a_only - b_only) / n if same_size else float(np.mean([o.mean() for o in outcomes]))
    if spread.se == 0:
        # Nothing varies: every seed's difference alike, and no image leaning to a model beyond what a seed's
        # noise gives (no discordant pair anywhere, or every image won by the same model). There is no t; the
        # same outcome in every seed is one seed's evidence, as for repeated seeds: the exact test of the seed
        # that is least sure (the largest p; of those, the fewest images), not of whichever says the most.
        exact = max(((exact_test(*s), s[0]) for s in seeds), key=lambda t: (t[0]["p_value"], -t[1]))[0]
        return {**common, **exact, "test": "McNemar exact" if a_only + b_only else "t over seeds"}
    half = spread.half_width  # infinite for one test image: a difference lies between -1 and 1
    return {
        **common,
        "test": "t over seeds",
        "p_value": spread.p_value(diff),
        "diff": diff,
        "diff_ci95": [max(-1.0, diff - half), min(1.0, diff + half)],
    }


def _rights(y_true, pred_a, pred_b) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed, which images a and which b got right; or one sentence on why they cannot be compared."""
    counts = (len(y_true), len(pred_a), len(pred_b))
    if len(set(counts)) > 1 or not counts[0]:
        raise InputError(
            f"y_true, pred_a and pred_b must hold one array per seed each, for the same seeds; got {counts[0]}, "
            f"{counts[1]} and {counts[2]} arrays."
        )
    out = []
    for seed, (y, a, b) in enumerate(zip(y_true, pred_a, pred_b), start=1):
        y, a, b = np.asarray(y), np.asarray(a), np.asarray(b)
        if y.ndim != 1 or a.shape != y.shape or b.shape != y.shape:
            raise InputError(
                f"Seed {seed} has labels of shape {y.shape} and predictions of shapes {a.shape} (a) and {b.shape} "
                "(b); give each model one prediction per test image."
            )
        if not len(y):
            raise InputError(f"Seed {seed} has no test images; a comparison needs at least one.")
        out.append((a == y, b == y))
    return out


def _difference_spread(outcomes: list[np.ndarray], same_images: bool, pool: int | None = None) -> _Spread:
    """The uncertainty of the mean difference over seeds, each seed's per-image differences in ``outcomes``.

    Other images in each seed (``--split random``): every seed's difference
    holds its own test sample's spread, so the seeds' spread is all of it. The
    same images in every seed (the official split): a difference is in part
    its images' (they recur in every seed and do not average out over seeds),
    in part its seed's and in part noise that is both (an image that one
    seed's model gets right and another's wrong). ``_images_part`` parts
    them. A seed's own variance taken for the test sample's, as it was, is
    counted twice: equal models then came out "better" or "worse" in under
    0.5% of simulated tests, and a real difference was found less often with
    5 seeds than with 3. Test sets drawn anew from one ``pool`` of images: the
    seeds' spread is that of the difference on the pool, itself a sample of
    the images the models meet, whose mean difference moves by up to the
    share of discordant pairs over ``pool`` (``_pool_part``).
    """
    k = len(outcomes)
    seeds_part = float(np.var([o.mean() for o in outcomes], ddof=1)) / k
    if same_images:
        return _spread(seeds_part, k, _images_part(np.stack(outcomes)))
    if seeds_part == 0:  # every seed's difference alike: nothing to test (one seed's evidence, ``paired_test``)
        return _Spread(0.0, math.inf)
    return _spread(seeds_part, k, _pool_part(outcomes, pool))


def _pool_part(outcomes: list[np.ndarray], pool: int | None) -> float:
    """What the pool of images the seeds drew their test sets from adds to the variance of the mean difference
    (0 without one: each seed's test images are new).

    Given the pool, the seeds are independent draws, so their spread is the
    mean's about the pool's own mean difference; that one differs from the
    mean difference over all images by the variance of an image's expected
    difference over ``pool``, which is at most the mean square of the
    differences (-1, 0, 1): the share of discordant pairs. With the seeds'
    spread alone, 20 seeds drawing 360 test images from scikit-learn's 1,797
    digits called equal models different in 15% of simulated tests.
    """
    if pool is None:
        return 0.0
    discordant = sum(np.count_nonzero(o) for o in outcomes) / sum(len(o) for o in outcomes)
    return discordant / pool


def _images_part(table: np.ndarray) -> float:
    """What the images add to the variance of the mean of ``table`` (seeds x images, values -1, 0, 1) beyond
    the spread of its seeds' means.

    The two-way analysis of variance without replication: the mean's
    variance, as seeds and images both vary, is (MS_seeds + MS_images -
    MS_residual) / (seeds * images). The seeds' spread gives the first term;
    this is the rest, (MS_images - MS_residual) / (seeds * images), not below
    0 (images that lean no way beyond the noise add nothing).
    """
    k, n = table.shape
    if n < 2:
        return math.inf  # one test image: nothing says how another image would go
    grand = float(table.mean())
    ms_seeds = n * float(table.mean(axis=1).var(ddof=1))
    ms_images = k * float(table.mean(axis=0).var(ddof=1))
    total = np.count_nonzero(table) - k * n * grand**2  # the squares of -1, 0 and 1: 1 where not 0
    ms_residual = (total - (k - 1) * ms_seeds - (n - 1) * ms_images) / ((n - 1) * (k - 1))
    return max(0.0, ms_images - ms_residual) / (k * n)


def _repeated(y_true: Sequence[np.ndarray], outcomes: list[np.ndarray]) -> bool:
    """Whether every seed repeats the first one's evidence: the same images, each won by the same model or by
    neither (deterministic models, or seeds that change only a wrong answer's label): one seed's evidence. Told
    by the predictions, seeds differing in one wrong label alone were tested by the normal approximation of their
    images' spread (p = 0.025 for 5 pairs won by a and none by b, where the exact test gives 0.0625)."""
    return all(np.array_equal(y, y_true[0]) and np.array_equal(o, outcomes[0]) for y, o in zip(y_true, outcomes))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values of one family of tests (same order)."""
    if not len(p_values):
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]


def verdict(diff: float, p_holm: float) -> str:
    """ "better" / "worse" (a against b) when the corrected p is under 5%, else "not distinguishable at 5%"."""
    if p_holm < ALPHA and diff > 0:  # written so that a NaN, in either, is no verdict
        return "better"
    if p_holm < ALPHA and diff < 0:
        return "worse"
    return NOT_DISTINGUISHABLE


def _family(pairs: list, against: str, dataset: str, y_true, preds: dict, pool: int | None) -> list[dict]:
    """Test each (a, b) pair and Holm-correct them as one family."""
    tests = [paired_test(y_true, preds[a], preds[b], pool=pool) for a, b in pairs]
    adjusted = holm([t["p_value"] for t in tests])
    return [
        {"a": a, "b": b, "dataset": dataset, "against": against, **t, "p_holm": q, "verdict": verdict(t["diff"], q)}
        for (a, b), t, q in zip(pairs, tests, adjusted)
    ]


def comparisons(
    dataset: str,
    means: dict[str, float],
    y_true: list[np.ndarray],
    preds: dict,
    baseline: str | None = None,
    *,
    matrix: dict | None = None,
    pool: int | None = None,
) -> list[dict]:
    """Every model against the best one (highest mean accuracy) and against ``baseline``, Holm-corrected.

    Which model is best is read off the same predictions, so a comparison
    with it is one of every pair, corrected with every pair (the numbers of
    ``significance_matrix``): corrected with the other comparisons against
    the best alone, 5 equal models gave a false verdict in 8% of simulated
    comparisons, 8 in 10%. The baseline is named beforehand: the comparisons
    with it are a family of their own. ``preds`` maps a model to its
    predictions per seed, in the order of ``y_true``; ``matrix``, the
    models' ``significance_matrix`` where the caller has it (else made here);
    ``pool``, as for ``paired_test``.
    """
    if not means:
        raise InputError("means is empty; give each compared model's mean accuracy, one model at least.")
    if baseline is not None and baseline not in means:
        raise InputError(f"baseline {baseline!r} is not among the models of means ({', '.join(map(repr, means))}).")
    _check_predicted(list(means), preds)
    best = max(means, key=lambda m: means[m])
    matrix = matrix if matrix is not None else significance_matrix(list(means), y_true, preds, pool=pool)
    out = [{**matrix[(m, best)], "dataset": dataset, "against": "best"} for m in means if m != best]
    if baseline is not None:
        out += _family([(m, baseline) for m in means if m != baseline], "baseline", dataset, y_true, preds, pool)
    return out


def significance_matrix(names: list[str], y_true: list[np.ndarray], preds: dict, *, pool: int | None = None) -> dict:
    """Every pair of models tested, Holm-corrected across all pairs: ``{(a, b): test}`` both ways round (``pool``:
    as for ``paired_test``)."""
    _check_predicted(names, preds)
    pairs = list(itertools.combinations(names, 2))
    out = {}
    for row in _family(pairs, "each other", "", y_true, preds, pool):
        a, b = row["a"], row["b"]
        out[(a, b)] = row
        flipped = {
            "diff": 0.0 - row["diff"],  # not -0.0 for a difference of 0 (shown as "-0.00")
            "diff_ci95": [0.0 - row["diff_ci95"][1], 0.0 - row["diff_ci95"][0]],
            "a_only": row["b_only"],
            "b_only": row["a_only"],
        }
        out[(b, a)] = {**row, "a": b, "b": a, **flipped, "verdict": verdict(-row["diff"], row["p_holm"])}
    return out


def _check_predicted(names: list[str], preds: dict) -> None:
    """One sentence, not a KeyError, for a model that ``preds`` holds no predictions of."""
    missing = [name for name in names if name not in preds]
    if missing:
        raise InputError(
            f"preds holds no predictions of {', '.join(map(repr, missing))}; give every model its predictions per "
            "seed, in the order of y_true."
        )
