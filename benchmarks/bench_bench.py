"""The research bench: a 3-seed comparison of knn-deskew, svm-rbf, cnn-fast and a user CNN on MNIST and Fashion-MNIST.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_bench.py [--limit N] [--seeds 3]

Runs ``compare`` twice against a fresh MLflow SQLite store in a temp folder:
cold (every (model, dataset, seed) fitted and recorded) and warm (every unit
reused from the recorded runs, after verifying its model files). Prints the
tables with intervals and verdicts, both wall times and their ratio, and the
tracking overhead per run (recording a fitted run; finding and verifying a
reused one). The user CNN is ``user_cnn`` below, passed as
``benchmarks/bench_bench.py:user_cnn`` exactly as a researcher would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one


def user_cnn(seed: int):
    """A LeNet-style net of the kind a researcher brings: two convolutions, two linear layers (trained 2 epochs)."""
    from torch import nn

    from mnistlab import CNNClassifier

    net = nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    return CNNClassifier(module=net, epochs=2, batch_size=128, lr=0.05, random_state=seed)


def run(models, args, store: Path, out: Path, **extra):
    from mnistlab.lab.compare import compare

    steps: list[str] = []
    start = time.perf_counter()
    summary = compare(
        models,
        datasets=args.dataset,
        seeds=args.seeds,
        limit=args.limit,
        n_jobs=args.n_jobs,
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        out_dir=out,
        progress=steps.append,
        **extra,
    )
    return summary, time.perf_counter() - start


def print_tables(summary: dict) -> None:
    verdicts = {(c["a"], c["dataset"]): c for c in summary["comparisons"] if c["against"].startswith("best")}
    for dataset in dict.fromkeys(r["dataset"] for r in summary["results"]):
        rows = [r for r in summary["results"] if r["dataset"] == dataset]
        print(
            f"\n{dataset}: {rows[0]['n_train']:,} training / {rows[0]['n_test']:,} test images, seeds {rows[0]['seeds']}"
        )
        print(f"{'model':<22} {'acc % mean':>10} {'95% interval':>15} {'std':>6} {'fit s':>8}  vs best (Holm)")
        for r in rows:
            low, high = r["test_accuracy_ci95"]
            std = "-" if r["test_accuracy_std"] is None else f"{100 * r['test_accuracy_std']:.2f}"
            c = verdicts.get((r["model"], dataset))
            vs = "best" if c is None else f"{c['verdict']} (p {c['p_holm']:.2g}, diff {100 * c['diff']:+.2f} pts)"
            print(
                f"{r['model']:<22} {100 * r['test_accuracy_mean']:10.2f} {100 * low:7.2f}-{100 * high:6.2f} "
                f"{std:>6} {r['fit_seconds_mean']:8.1f}  {vs}"
            )


def overhead(runs: list[dict]) -> str:
    secs = [r["tracking_seconds"] for r in runs]
    return f"{statistics.mean(secs) * 1000:.0f} ms mean, {max(secs) * 1000:.0f} ms max over {len(secs)} runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="training images per fit (default: all 60,000)")
    parser.add_argument("--seeds", type=at_least_one, default=3)
    parser.add_argument("--dataset", action="append", default=None, help="repeatable (default: mnist, fashion-mnist)")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    args.dataset = args.dataset or ["mnist", "fashion-mnist"]
    from mnistlab.errors import ParameterError

    models = ["knn-deskew", "svm-rbf", "cnn-fast", f"{Path(__file__).resolve()}:user_cnn"]
    print(f"{machine.describe()}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-bench-") as tmp:
        store, out = Path(tmp) / "store", Path(tmp) / "report"
        store.mkdir()
        try:  # compare checks its options before it fits anything: --limit 5, --n-jobs 0...
            cold, cold_s = run(models, args, store, out)
        except ParameterError as exc:
            parser.error(str(exc))
        print_tables(cold)
        warm, warm_s = run(models, args, store, Path(tmp) / "report-warm")
        reused = sum(r["reused"] for r in warm["results"])
        units = sum(len(r["seeds"]) for r in warm["results"])
        same = all(
            a["test_accuracies"] == b["test_accuracies"] for a, b in zip(cold["results"], warm["results"], strict=True)
        )
        print(f"\ncold: {cold_s:.1f} s wall ({units} fits recorded)")
        print(
            f"warm: {warm_s:.1f} s wall ({reused}/{units} reused, same accuracies: {same}); cold/warm {cold_s / warm_s:.1f}x"
        )
        print(f"tracking overhead, recording a fitted run: {overhead(cold['runs'])}")
        print(f"tracking overhead, finding and verifying a reused run: {overhead(warm['runs'])}")
        fit_total = sum(r["fit_seconds"] + r["predict_seconds"] + (r.get("cv_seconds") or 0) for r in cold["runs"])
        rec_total = sum(r["tracking_seconds"] for r in cold["runs"])
        print(f"recording took {100 * rec_total / fit_total:.1f}% of the fit, CV and predict time of the cold run")
        print(f"(load at the end {os.getloadavg()})")


if __name__ == "__main__":
    main()
