"""The bench's statistics against values computed independently (scipy's binomial test, Holm by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, t

from mnistlab.lab.stats import accuracy_summary, comparisons, holm, paired_test, significance_matrix, verdict


def _pair(n: int, a_only: int, b_only: int, both_wrong: int = 0):
    """Labels and two prediction vectors with exactly these discordant counts."""
    y = np.zeros(n, dtype=np.int64)
    a, b = y.copy(), y.copy()
    a[:b_only] = 1  # a wrong where only b is right
    b[b_only : b_only + a_only] = 1  # b wrong where only a is right
    a[n - both_wrong :] = 2
    b[n - both_wrong :] = 3
    return y, a, b


@pytest.mark.parametrize("a_only, b_only", [(10, 3), (3, 10), (12, 3), (1, 0), (25, 25), (40, 18)])
def test_mcnemar_exact_is_the_binomial_test_of_the_discordant_pairs(a_only, b_only):
    y, a, b = _pair(200, a_only, b_only, both_wrong=7)
    got = paired_test([y], [a], [b])
    expected = binomtest(b_only, a_only + b_only, 0.5).pvalue  # two-sided, computed independently
    assert got["p_value"] == pytest.approx(expected, rel=1e-12)
    assert (got["a_only"], got["b_only"], got["n"]) == (a_only, b_only, 200)
    assert got["diff"] == pytest.approx((a_only - b_only) / 200)
    low, high = got["diff_ci95"]
    assert low <= got["diff"] <= high
    # The interval inverts the same exact test: it leaves out 0 exactly when p < 5%.
    assert (low > 0 or high < 0) == (expected < 0.05)


def test_known_p_values():
    y, a, b = _pair(100, 10, 3)
    assert paired_test([y], [a], [b])["p_value"] == pytest.approx(0.09228515625)  # 2 * P(X <= 3), X ~ Bin(13, 1/2)
    y, a, b = _pair(100, 12, 3)
    assert paired_test([y], [a], [b])["p_value"] == pytest.approx(0.03515625)


def test_identical_predictions_give_p_one_and_not_distinguishable():
    y, a, _ = _pair(50, 0, 4, both_wrong=5)
    got = paired_test([y], [a], [a.copy()])
    assert got["p_value"] == 1.0 and got["diff"] == 0
    # No discordant pair among 50 images: the difference is 0 here, not surely everywhere (Clopper-Pearson, 0 of 50).
    assert got["diff_ci95"] == pytest.approx([-(1 - 0.025 ** (1 / 50)), 1 - 0.025 ** (1 / 50)])
    assert verdict(got["diff"], holm([got["p_value"]])[0]) == "not distinguishable at 5%"


def test_seeds_that_repeat_one_seed_are_that_seeds_evidence_not_more():
    y, a, b = _pair(100, 0, 4)
    one = paired_test([y], [a], [b])
    four = paired_test([y] * 4, [a] * 4, [b] * 4)
    assert (four["n"], four["a_only"], four["b_only"]) == (400, 0, 16)  # counted over all seeds
    for key in ("p_value", "diff", "diff_ci95", "test"):
        assert four[key] == one[key]
    assert one["p_value"] == pytest.approx(binomtest(0, 4, 0.5).pvalue)


def test_seeds_where_one_model_gets_every_image_the_other_misses_are_told_apart():
    """Every image won by a in every seed (a right, b wrong throughout), on other images each seed: no spread
    within or between seeds. This was taken for "no discordant pair": p = 1 and an interval around 0 that left
    out the difference of 1 it reported."""
    n = 20
    y1, y2 = np.arange(n) % 10, (np.arange(n) + 3) % 10
    got = paired_test([y1, y2], [y1, y2], [(y1 + 1) % 10, (y2 + 1) % 10])
    assert (got["a_only"], got["b_only"], got["diff"]) == (2 * n, 0, 1.0)
    # The same outcome in every seed is one seed's evidence: the exact test of one seed's 20 discordant pairs.
    assert got["p_value"] == pytest.approx(binomtest(0, n, 0.5).pvalue)
    low, high = got["diff_ci95"]
    assert low <= got["diff"] <= high and low > 0
    assert verdict(got["diff"], holm([got["p_value"]])[0]) == "better"


def test_seeds_are_tested_on_their_mean_difference_with_both_uncertainties():
    y, a1, b1 = _pair(100, 9, 2)
    _, a2, b2 = _pair(100, 6, 4)
    got = paired_test([y, y], [a1, a2], [b1, b2])
    assert (got["n"], got["a_only"], got["b_only"], got["test"]) == (200, 15, 6, "t over seeds")
    diffs = np.array([7 / 100, 2 / 100])
    between = diffs.var(ddof=1) / 2
    within = np.mean([(11 / 100 - 0.07**2) / 100, (10 / 100 - 0.02**2) / 100])
    se, df = math.sqrt(between + within), (between + within) ** 2 / between**2  # Welch-Satterthwaite, 1 seed df
    assert got["diff"] == pytest.approx(diffs.mean())
    assert got["p_value"] == pytest.approx(2 * t.sf(diffs.mean() / se, df))
    half = t.ppf(0.975, df) * se
    assert got["diff_ci95"] == pytest.approx([diffs.mean() - half, diffs.mean() + half])


def test_the_seed_test_keeps_its_level_when_models_differ_image_by_image():
    # Two models equally good on average, each better on images of its own, 5 seeds on the same test images:
    # pooling the seeds' pairs counted each image 5 times and called such pairs "better" or "worse" far too often.
    rng = np.random.default_rng(0)
    rejected, trials = 0, 300
    for _ in range(trials):
        n = 400
        easy = rng.uniform(0.6, 1.0, n)
        lean = rng.uniform(-0.3, 0.3, n)  # an image's lean towards a (positive) or b
        p_a, p_b = np.clip(easy + lean, 0, 1), np.clip(easy - lean, 0, 1)
        y = np.zeros(n, np.int64)
        preds_a = [np.where(rng.random(n) < p_a, 0, 1) for _ in range(5)]
        preds_b = [np.where(rng.random(n) < p_b, 0, 1) for _ in range(5)]
        rejected += paired_test([y] * 5, preds_a, preds_b)["p_value"] < 0.05
    assert rejected / trials < 0.08


def _holm_by_hand(p):
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03], [0.2, 0.001, 0.04, 0.5], [0.9], [0.01, 0.01]])
def test_holm_matches_the_step_down_rule(p):
    assert holm(p) == pytest.approx(_holm_by_hand(p))


def test_verdicts():
    assert verdict(0.01, 0.002) == "better"
    assert verdict(-0.01, 0.002) == "worse"
    assert verdict(0.01, 0.05) == "not distinguishable at 5%"


def test_accuracy_summary_over_seeds_has_both_uncertainties():
    accs = [0.91, 0.93, 0.92, 0.925]
    got = accuracy_summary(accs, 10_000)
    mean, sd = np.mean(accs), np.std(accs, ddof=1)
    between, within = sd**2 / 4, mean * (1 - mean) / 10_000
    df = (between + within) ** 2 * 3 / between**2
    half = t.ppf(0.975, df) * math.sqrt(between + within)
    assert got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(sd)
    assert got["ci95"] == pytest.approx([mean - half, mean + half])
    # Seeds that differ by one image of 10,000 are no surer than one seed: never narrower than its Wilson interval.
    one = accuracy_summary([0.9812], 10_000)["ci95"]
    for seeds in ([0.9812, 0.9813], [0.9812, 0.9813, 0.9812, 0.9812, 0.9813]):
        low, high = accuracy_summary(seeds, 10_000)["ci95"]
        assert high - low >= 0.9 * (one[1] - one[0])


def test_accuracy_summary_of_one_seed_is_a_wilson_interval():
    got = accuracy_summary([0.9], 1000)
    z, n, p = 1.959963984540054, 1000, 0.9
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert got["std"] is None and got["ci95"] == pytest.approx([centre - half, centre + half])
    # Seeds that all agree say nothing about spread: the test sample's interval again, with std 0.
    same = accuracy_summary([0.9, 0.9, 0.9], 1000)
    assert same["std"] == 0 and same["ci95"] == pytest.approx(got["ci95"])
    # Equal accuracies whose float mean rounds (std 1.4e-16, not 0) agree too: not a zero-width t interval.
    knn = accuracy_summary([0.9841, 0.9841, 0.9841], 10_000)
    assert knn["std"] == 0 and knn["ci95"] == pytest.approx(accuracy_summary([0.9841], 10_000)["ci95"])
    assert knn["ci95"][1] - knn["ci95"][0] > 0.004
    assert accuracy_summary([1.0], 360)["ci95"][1] == 1.0  # not 0.9999999999999999


def test_comparisons_test_everyone_against_the_best_and_the_baseline_holm_corrected():
    y = np.zeros(1000, dtype=np.int64)
    preds = {"good": y.copy(), "mid": y.copy(), "bad": y.copy()}
    preds["mid"][:30] = 1
    preds["bad"][:60] = 1
    means = {m: float(np.mean(p == y)) for m, p in preds.items()}
    rows = comparisons("toy", means, [y], {m: [p] for m, p in preds.items()}, baseline="mid")
    vs_best = [r for r in rows if r["against"] == "best"]
    vs_base = [r for r in rows if r["against"] == "baseline"]
    assert {(r["a"], r["b"]) for r in vs_best} == {("mid", "good"), ("bad", "good")}
    assert {(r["a"], r["b"]) for r in vs_base} == {("good", "mid"), ("bad", "mid")}
    raw = [r["p_value"] for r in vs_best]
    assert [r["p_holm"] for r in vs_best] == pytest.approx(_holm_by_hand(raw))
    assert all(r["verdict"] == "worse" for r in vs_best)
    assert {r["a"]: r["verdict"] for r in vs_base} == {"good": "better", "bad": "worse"}
    matrix = significance_matrix(list(preds), [y], {m: [p] for m, p in preds.items()})
    assert matrix[("good", "bad")]["verdict"] == "better" and matrix[("bad", "good")]["verdict"] == "worse"
    assert matrix[("good", "bad")]["p_holm"] == matrix[("bad", "good")]["p_holm"]
