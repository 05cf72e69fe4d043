"""The ``cnn`` recipe's net in float32 and with int8 convolutions (``mnistlab export --int8``), in one process.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_int8.py [--recipe cnn] [--trials 5]

Trains the recipe as ``mnistlab train`` does (official split, seed 42, into a
temporary folder), then exports it twice, as ``mnistlab export`` does: the
float32 graph (the reference) and the int8 one (calibrated on 1,000 training
images). Both are measured on the 10,000 test digits: accuracy with its 95%
Wilson interval, the images whose answers differ (McNemar's exact test on
them, and the interval of the difference), images/s at batch 1,000 with one intra-op thread and with one per CPU
(``--trials`` runs each: mean ± sd), and one image's latency (median of 2,000).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one, recipe_name
from mnistlab import load_split
from mnistlab.lab.export import export_model
from mnistlab.lab.stats import accuracy_summary, paired_test
from mnistlab.lab.train import train_recipe
from mnistlab.models.cnn.onnx import OnnxPredictor


def rates(net: OnnxPredictor, x: np.ndarray, trials: int) -> tuple[float, float]:
    """images/s at batch ``len(x)``: mean and sd of ``trials`` runs, after one to warm up."""
    net.predict_proba(x)
    runs = []
    for _ in range(trials):
        start = time.perf_counter()
        net.predict_proba(x)
        runs.append(len(x) / (time.perf_counter() - start))
    return statistics.mean(runs), statistics.stdev(runs) if trials > 1 else 0.0


def latency_ms(net: OnnxPredictor, x: np.ndarray) -> float:
    times = []
    for i in range(2000):
        start = time.perf_counter()
        net.predict_proba(x[i % len(x) : i % len(x) + 1])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="cnn", type=recipe_name)
    ap.add_argument("--trials", type=at_least_one, default=5)
    args = ap.parse_args()
    print(f"machine: {machine.describe()}, load {tuple(round(x, 2) for x in os.getloadavg())}", flush=True)
    _, X_te, _, y_te = load_split()
    x = X_te.reshape(-1, 1, 28, 28).astype(np.float32) / 255
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trained = train_recipe(args.recipe, cv=0, out=Path(tmp) / "model", n_jobs=os.cpu_count() or 1)
        print(
            f"{args.recipe}: trained in {time.perf_counter() - start:.0f} s, test accuracy {trained['test_accuracy']}"
        )
        files = {"float32": Path(tmp) / "float32.onnx", "int8": Path(tmp) / "int8.onnx"}
        export_model(trained["model_dir"], files["float32"])
        int8 = export_model(trained["model_dir"], files["int8"], int8=True)
        print(f"export --int8: {int8['same_answers']:,} of {int8['n_test']:,} answers as float32")
        answers = {}
        print(
            f"{'graph':8s} {'accuracy':>9s} {'95% interval':>17s} {'threads':>7s} {'images/s @1000':>18s} {'one image ms':>13s}"
        )
        for name, path in files.items():
            answers[name] = OnnxPredictor(path).predict_proba(x).argmax(1)
            accuracy = accuracy_summary([float(np.mean(answers[name] == y_te))], len(y_te))
            low, high = accuracy["ci95"]
            for threads in sorted({1, os.cpu_count() or 1}):
                net = OnnxPredictor(path, n_threads=threads)
                mean, sd = rates(net, x[:1000], args.trials)
                print(
                    f"{name:8s} {accuracy['mean']:9.4f} {f'[{low:.4f}, {high:.4f}]':>17s} {threads:7d} "
                    f"{mean:10,.0f} ± {sd:5,.0f} {latency_ms(net, x):13.3f}",
                    flush=True,
                )
        t = paired_test([y_te], [answers["int8"]], [answers["float32"]])
        print(
            f"right only in int8: {t['a_only']}; only in float32: {t['b_only']}; {t['test']} p = {t['p_value']:.3g}; "
            f"int8 minus float32 {t['diff']:+.4f}, 95% interval [{t['diff_ci95'][0]:+.4f}, {t['diff_ci95'][1]:+.4f}]"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
