"""The research bench's statistics on simulated comparisons: how often two equal models are called different, how
often a real difference is found, and how often a model's accuracy interval holds its true accuracy; the bench's
own tests (``mnistlab.lab.stats``) beside the textbook ones a researcher would reach for.

    .venv/bin/python benchmarks/bench_stats.py [--trials 2000] [--seed 0]

Every trial draws a population's worth of test images anew: each image has a chance of being read right
(99% for most, 30-80% for the 5% that are hard) and, on the hard ones, a lean towards one model or the other
(normal, sd 0.1; mean 0 for equal models, +0.05 for "a better": printed, in points of accuracy). A seed's
predictions are coin flips with those chances, shifted by its own training luck (normal, sd 0.2 points, a
model and seed apiece). What the models are truly worth is their mean chance over the population, so a test
of the test images alone answers another question than the one asked.

Two designs, as ``compare`` runs them:
- official: every seed tests on the same 10,000 images (MNIST's test set);
- random: every seed draws 360 test images from one pool of 1,797 (``--split random`` on scikit-learn's digits).

Tests of a against b: the bench's ``paired_test`` (``pool`` given for the random design); McNemar's exact test of
every seed's pairs pooled (statsmodels); the paired t test of the seeds' accuracy differences (scipy). Intervals
of a's accuracy: the bench's ``accuracy_summary``; the t interval of the seeds' accuracies alone; Wilson's
interval of every seed's answers pooled. Each rate is printed with its 95% Wilson interval over the trials.
No timing: the machine's load does not matter.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one
from mnistlab.lab.stats import accuracy_summary, paired_test
from mnistlab.lab.wilson import wilson_interval
from rates import rate

HARD_SHARE, HARD_RANGE, LEAN_SD, SEED_SD = 0.05, (0.3, 0.8), 0.1, 0.002
BETTER = 0.05  # the lean's mean on hard images where a is better


@dataclass(frozen=True)
class Design:
    name: str
    n_test: int  # test images a seed
    pool: int | None  # images the seeds draw their test sets from anew (None: the same test images every seed)


DESIGNS = (Design("official", 10_000, None), Design("random", 360, 1_797))


def images(rng: np.random.Generator, n: int, lean_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """(n,) chances that a and b read each of n images right, drawn from the population."""
    hard = rng.random(n) < HARD_SHARE
    base = np.where(hard, rng.uniform(*HARD_RANGE, n), 0.99)
    lean = np.where(hard, rng.normal(lean_mean, LEAN_SD, n), 0.0)
    return np.clip(base + lean, 0, 1), np.clip(base - lean, 0, 1)


def seeds_of(rng: np.random.Generator, design: Design, seeds: int, lean_mean: float) -> tuple[list, list, list]:
    """Labels and both models' predictions for each seed (class 0 is right), as ``compare`` would hand them over."""
    p_a, p_b = images(rng, design.n_test if design.pool is None else design.pool, lean_mean)
    ys, preds_a, preds_b = [], [], []
    for s in range(seeds):
        drawn = np.arange(design.n_test) if design.pool is None else rng.choice(design.pool, design.n_test, False)
        # The same labels every seed on the same test images; a random split's differ from seed to seed.
        y = np.full(design.n_test, 0 if design.pool is None else s % 10, np.int64)
        luck_a, luck_b = rng.normal(0, SEED_SD, 2)
        preds_a.append(np.where(rng.random(design.n_test) < p_a[drawn] + luck_a, y, y + 1))
        preds_b.append(np.where(rng.random(design.n_test) < p_b[drawn] + luck_b, y, y + 1))
        ys.append(y)
    return ys, preds_a, preds_b


def verdicts(ys, preds_a, preds_b, design: Design) -> dict[str, bool]:
    """Whether each test calls a and b different at 5%."""
    right_a = [pa == y for y, pa in zip(ys, preds_a)]
    right_b = [pb == y for y, pb in zip(ys, preds_b)]
    a_only = int(sum(np.sum(ra & ~rb) for ra, rb in zip(right_a, right_b)))
    b_only = int(sum(np.sum(~ra & rb) for ra, rb in zip(right_a, right_b)))
    pooled = mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue if a_only + b_only else 1.0
    diffs = [ra.mean() - rb.mean() for ra, rb in zip(right_a, right_b)]
    t_p = sps.ttest_1samp(diffs, 0.0).pvalue if np.std(diffs) > 0 else 1.0
    ours = paired_test(ys, preds_a, preds_b, pool=design.pool)["p_value"]
    return {"bench": ours < 0.05, "McNemar pooled": pooled < 0.05, "t over seeds": bool(t_p < 0.05)}


def population(rng: np.random.Generator, lean_mean: float, n: int = 4_000_000) -> tuple[float, float]:
    """a's true accuracy and a's lead over b (their mean chances over the population), from ``n`` images."""
    p_a, p_b = images(rng, n, lean_mean)
    return float(p_a.mean()), float((p_a - p_b).mean())


def covers(ys, preds_a, design: Design, truth: float) -> dict[str, bool]:
    """Whether each interval of a's accuracy holds its true accuracy ``truth``."""
    accs = [float(np.mean(pa == y)) for y, pa in zip(ys, preds_a)]
    k, mean = len(accs), float(np.mean(accs))
    ours = accuracy_summary(accs, design.n_test, pool=design.pool, y_true=ys, y_pred=preds_a)["ci95"]  # as compare
    half = sps.t.ppf(0.975, k - 1) * np.std(accs, ddof=1) / np.sqrt(k)
    pooled = wilson_interval(int(round(mean * k * design.n_test)), k * design.n_test)
    return {
        name: low <= truth <= high
        for name, (low, high) in (
            ("bench", ours),
            ("t over seeds", (mean - half, mean + half)),
            ("Wilson pooled", pooled),
        )
    }


def table(title: str, rows: dict[str, dict[str, list[bool]]]) -> None:
    print(f"\n{title}")
    names = list(next(iter(rows.values())))
    print(f"  {'':24s}" + "".join(f"{n:>26s}" for n in names))
    for label, found in rows.items():
        cells = []
        for name in names:
            r = rate(found[name])
            cells.append(f"{100 * r['rate']:6.1f}% ({100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f})")
        print(f"  {label:24s}" + "".join(f"{c:>26s}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=at_least_one, default=2000, help="simulated comparisons per design and seed count")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    truth, _ = population(rng, 0.0)
    _, lead = population(rng, BETTER)
    print(f"machine: {machine.describe()}; {args.trials} trials a cell, seed {args.seed}")
    print(f"a's true accuracy {100 * truth:.3f}% (equal models); a better: by {100 * lead:.3f} points")
    for design in DESIGNS:
        pool = f", each drawn from {design.pool:,}" if design.pool else ", the same every seed"
        label = f"{design.name}: {design.n_test:,} test images a seed{pool}"
        false, found, covered = {}, {}, {}
        for seeds in (2, 3, 5, 10):
            key = f"{seeds} seeds"
            false[key], found[key], covered[key] = {}, {}, {}
            for _ in range(args.trials):
                ys, pa, pb = seeds_of(rng, design, seeds, 0.0)
                for name, said in verdicts(ys, pa, pb, design).items():
                    false[key].setdefault(name, []).append(said)
                for name, held in covers(ys, pa, design, truth).items():
                    covered[key].setdefault(name, []).append(held)
                for name, said in verdicts(*seeds_of(rng, design, seeds, BETTER), design).items():
                    found[key].setdefault(name, []).append(said)
        table(f"{label}. Equal models called different (should be at most 5%):", false)
        table(f"{label}. a better (by the points above), found different (power: higher is better):", found)
        table(f"{label}. a's accuracy interval holds its true accuracy (should be at least 95%):", covered)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
