"""mnistlab's CNN recipes against the PyTorch MNIST example, in one run on one machine.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_cnn.py \
        [--threads 2] [--trials 3] [--budget 900] [--long cnn-best ensemble] [--json-out FILE] [--limit N]

Reference: pytorch/examples mnist/main.py, written out here (torchvision is not
a dependency): conv32-conv64-maxpool-dropout-fc128-dropout-fc10, Adadelta
lr 1.0, StepLR gamma 0.7, batch 64, a ``Dataset`` whose ``__getitem__``
converts and normalises one image at a time (ToTensor + Normalize), iterated
by a standard ``DataLoader``. It is evaluated on the test set after every
epoch and stopped at 99.0% or once its training time exceeds ``--budget``.

Ours: ``cnn-fast`` and ``cnn`` as registered (fixed epochs, one-cycle), so
their "time to 99.0%" is their whole fit, if the fitted model reaches 99.0%.
Then inference for all three: images/s at batch 1000 and single-image latency,
with PyTorch and with onnxruntime. Then the long recipes (``--long``):
accuracy and training time, one trial each; an ensemble's members are fitted
one after another (seeds seed, seed+1, ...) and the accuracy of the average
of the first k members is printed after each.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from torch import nn
from torch.utils.data import DataLoader, Dataset

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one, recipe_name
from mnistlab import load_split
from mnistlab.models.cnn.estimator import member_deskews
from mnistlab.models.cnn.onnx import OnnxPredictor
from mnistlab.models.recipes import get_recipe

GOAL = 0.99


class ExampleNet(nn.Module):
    """pytorch/examples mnist/main.py ``Net``, unchanged."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


class ExampleDataset(Dataset):
    """Per-sample transform, as torchvision's ToTensor() + Normalize((0.1307,), (0.3081,))."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = np.array(images).reshape(-1, 28, 28), labels  # writable copy

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).float().div(255).unsqueeze(0)
        return (x - 0.1307) / 0.3081, int(self.labels[i])


def normalised(images: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.array(images).reshape(-1, 1, 28, 28)).float() / 255 - 0.1307) / 0.3081


def train_reference(X_tr, y_tr, X_te, y_te, budget: float):
    torch.manual_seed(1)  # the example's default --seed
    model = ExampleNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    loader = DataLoader(ExampleDataset(X_tr, y_tr), batch_size=64, shuffle=True)
    test_loader = DataLoader(ExampleDataset(X_te, y_te), batch_size=1000)
    train_s, cpu_s, reached, acc, epochs = 0.0, 0.0, None, 0.0, 0
    for epoch in range(1, 15):  # the example's 14 epochs at most
        start, cpu = time.perf_counter(), time.process_time()
        model.train()
        for data, target in loader:
            opt.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            opt.step()
        sched.step()
        train_s += time.perf_counter() - start
        cpu_s += time.process_time() - cpu
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(d).argmax(1) == t).sum()) for d, t in test_loader)
        acc, epochs = correct / len(y_te), epoch
        print(
            f"  reference epoch {epoch}: test acc {acc:.4f}, {train_s:.1f} s of training ({cpu_s:.1f} s CPU)",
            flush=True,
        )
        if acc >= GOAL:
            reached = train_s
            break
        if train_s > budget:
            break
    return model.eval(), {
        "train_seconds": train_s,
        "cpu_seconds": cpu_s,
        "seconds_to_99": reached,
        "test_accuracy": acc,
        "epochs": epochs,
    }


def train_recipe_model(name: str, X_tr, y_tr, X_te, y_te, seed: int, n_jobs: int):
    est = get_recipe(name).build(seed, n_jobs).set_params(verbose=1)
    start, cpu = time.perf_counter(), time.process_time()
    est.fit(X_tr, y_tr)
    fit_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    acc = float(est.score(X_te, y_te))
    row = {
        "fit_seconds": fit_s,
        "cpu_seconds": cpu_s,
        "train_seconds": est.train_seconds_,
        "epochs": est.n_epochs_,
        "test_accuracy": acc,
        "seconds_to_99": fit_s if acc >= GOAL else None,
    }
    print(f"  {name}: test acc {acc:.4f}, fit {fit_s:.1f} s ({cpu_s:.1f} s CPU, {est.n_epochs_} epochs)", flush=True)
    return est, row


def train_members_one_by_one(name: str, X_tr, y_tr, X_te, y_te, seed: int, n_jobs: int):
    """An ensemble recipe's members fitted one at a time (seeds seed, seed+1, ...), so the
    accuracy of the average of the first k members is printed as soon as member k is done."""
    recipe_est = get_recipe(name).build(seed, n_jobs)
    proba_sum, members, train_s, cpu_s = 0.0, [], 0.0, 0.0
    for i, deskewed in enumerate(member_deskews(recipe_est.inputs, recipe_est.n_members)):
        # Member i reads the same kind of input as the recipe's member i ("mixed": every second deskewed).
        inputs = "deskewed" if deskewed else "raw"
        member = clone(recipe_est).set_params(n_members=1, inputs=inputs, n_jobs=1, random_state=seed + i, verbose=1)
        start, cpu = time.perf_counter(), time.process_time()
        member.fit(X_tr, y_tr)
        train_s, cpu_s = train_s + time.perf_counter() - start, cpu_s + time.process_time() - cpu
        proba = member.predict_proba(X_te)
        proba_sum = proba_sum + proba
        row = {
            "member_accuracy": float(np.mean(member.classes_[proba.argmax(1)] == y_te)),
            "ensemble_accuracy": float(np.mean(member.classes_[proba_sum.argmax(1)] == y_te)),
            "fit_seconds_so_far": train_s,
            "cpu_seconds_so_far": cpu_s,
        }
        members.append(row)
        print(
            f"  {name} member {i + 1}/{recipe_est.n_members}: member acc {row['member_accuracy']:.4f}, "
            f"average of {i + 1}: {row['ensemble_accuracy']:.4f}, {train_s:.0f} s so far ({cpu_s:.0f} s CPU)",
            flush=True,
        )
    return {
        "members": members,
        "test_accuracy": members[-1]["ensemble_accuracy"],
        "fit_seconds": train_s,
        "cpu_seconds": cpu_s,
        "train_seconds": train_s,
        "epochs": recipe_est.epochs * recipe_est.n_members,
    }


def mean_sd(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def inference(predict, batch, single, trials: int) -> dict:
    """images/s at batch 1000 (mean, sd over trials) and single-image latency (median ms)."""
    predict(batch)  # warm-up: allocations, oneDNN primitives
    rates = []
    for _ in range(trials):
        start = time.perf_counter()
        predict(batch)
        rates.append(len(batch) / (time.perf_counter() - start))
    lat = []
    for _ in range(200):
        start = time.perf_counter()
        predict(single)
        lat.append(time.perf_counter() - start)
    rate, rate_sd = mean_sd(rates)
    return {
        "images_per_s": rate,
        "images_per_s_sd": rate_sd,
        "latency_ms": 1000 * statistics.median(lat),
        "latency_ms_p90": 1000 * sorted(lat)[int(0.9 * len(lat))],
    }


def fmt_time(seconds):
    return "not reached" if seconds is None else f"{seconds:.1f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=at_least_one, default=torch.get_num_threads())
    ap.add_argument(
        "--trials", type=at_least_one, default=3, help="trials for cnn-fast training and for inference timings"
    )
    ap.add_argument("--budget", type=float, default=900, help="seconds of training after which the reference stops")
    ap.add_argument(
        "--long", nargs="*", type=recipe_name, default=["cnn-best", "ensemble"], help="long recipes: accuracy and time"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-compare", action="store_true", help="only the --long recipes")
    ap.add_argument("--limit", type=at_least_one, help="train on the first N images only (a quick smoke run)")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = (
        f"{machine.describe()}, torch {torch.__version__}, "
        f"onnxruntime {importlib.metadata.version('onnxruntime')}, {args.threads} torch thread(s), CUDA: {torch.cuda.is_available()}"
    )
    print(
        f"machine: {info}; load average {os.getloadavg()[0]:.1f} (CPU seconds are process time: with 1 thread, "
        "about what the wall time would be on an idle core)",
        flush=True,
    )
    X_tr, X_te, y_tr, y_te = load_split("mnist")
    X_tr, y_tr = X_tr[: args.limit], y_tr[: args.limit]
    results: dict = {"machine": info, "threads": args.threads, "trials": args.trials}

    if not args.no_compare:
        compare(args, X_tr, X_te, y_tr, y_te, results)
    for name in args.long:
        print(f"\nlong recipe {name}", flush=True)
        if get_recipe(name).build(args.seed, args.threads).n_members > 1:
            results[name] = train_members_one_by_one(name, X_tr, y_tr, X_te, y_te, args.seed, args.threads)
        else:
            _, results[name] = train_recipe_model(name, X_tr, y_tr, X_te, y_te, args.seed, args.threads)
        print(
            f"{name}: test accuracy {results[name]['test_accuracy']:.4f}, training {results[name]['train_seconds']:.0f} s "
            f"({results[name]['epochs']} epochs in all)",
            flush=True,
        )
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average at the end: {results['load_average_end']:.1f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)


def compare(args, X_tr, X_te, y_tr, y_te, results: dict) -> None:
    """The reference against cnn-fast and cnn: time to 99.0%, accuracy, inference speed."""
    print("training: time to 99.0% test accuracy", flush=True)
    ref_model, ref = train_reference(X_tr, y_tr, X_te, y_te, args.budget)
    results["reference"] = ref
    models = {}
    fast_runs = []
    for trial in range(args.trials):
        models["cnn-fast"], row = train_recipe_model(
            "cnn-fast", X_tr, y_tr, X_te, y_te, args.seed + trial, args.threads
        )
        fast_runs.append(row)
    results["cnn-fast"] = {"runs": fast_runs}
    models["cnn"], results["cnn"] = train_recipe_model("cnn", X_tr, y_tr, X_te, y_te, args.seed, args.threads)

    fast_fit = mean_sd([r["fit_seconds"] for r in fast_runs])
    fast_acc = mean_sd([r["test_accuracy"] for r in fast_runs])
    print(f"\n{'model':10s} {'to 99.0%':>14s} {'final acc':>10s} {'epochs':>7s}")
    print(
        f"{'reference':10s} {fmt_time(ref['seconds_to_99']):>14s} {ref['test_accuracy']:10.4f} {ref['epochs']:7d}"
        + ("" if ref["seconds_to_99"] else f"  (stopped after {ref['train_seconds']:.0f} s)")
    )
    accs = ", ".join(f"{r['test_accuracy']:.4f}" for r in fast_runs)
    reached = sum(r["seconds_to_99"] is not None for r in fast_runs)
    cpu = mean_sd([r["cpu_seconds"] for r in fast_runs])
    print(
        f"{'cnn-fast':10s} {fast_fit[0]:9.1f} ± {fast_fit[1]:.1f} {fast_acc[0]:10.4f} {fast_runs[0]['epochs']:7d}"
        f"  (fit s mean ± sd of {len(fast_runs)}, CPU {cpu[0]:.1f} ± {cpu[1]:.1f} s; {reached}/{len(fast_runs)} "
        f"reached 99.0%; accuracies {accs})"
    )
    print(
        f"{'cnn':10s} {fmt_time(results['cnn']['seconds_to_99']):>14s} {results['cnn']['test_accuracy']:10.4f} "
        f"{results['cnn']['epochs']:7d}"
    )
    for name in ("cnn-fast", "cnn"):
        runs = fast_runs if name == "cnn-fast" else [results["cnn"]]
        ours = [r["seconds_to_99"] for r in runs]
        ours_cpu = statistics.mean(r["cpu_seconds"] for r in runs)
        if ref["seconds_to_99"] and all(ours):
            ratio = ref["seconds_to_99"] / statistics.mean(ours)
            results[name]["speedup_to_99"] = ratio
            print(
                f"time to 99.0%: {name} is {ratio:.1f}x faster than the reference "
                f"({ref['cpu_seconds'] / ours_cpu:.1f}x in CPU seconds)"
            )
        elif all(ours):
            print(
                f"time to 99.0%: the reference did not reach it within {ref['train_seconds']:.0f} s "
                f"({ref['cpu_seconds']:.0f} s CPU); {name} did in {statistics.mean(ours):.1f} s ({ours_cpu:.1f} s CPU): "
                f"ratio > {ref['train_seconds'] / statistics.mean(ours):.1f} (> {ref['cpu_seconds'] / ours_cpu:.1f} in CPU s)"
            )

    print(f"\ninference ({args.trials} trials; latency: median of 200 single images)", flush=True)
    batch_u8, single_u8 = X_te[:1000], X_te[:1]
    batch_f, single_f = (
        X_te[:1000].reshape(-1, 1, 28, 28) / np.float32(255),
        X_te[:1].reshape(-1, 1, 28, 28) / np.float32(255),
    )
    ref_ort = OnnxPredictor.from_module(ref_model, (28, 28), n_threads=args.threads)
    with torch.inference_mode():
        paths = {
            ("reference", "torch"): (lambda x: ref_model(x), normalised(batch_u8), normalised(single_u8)),
            ("reference", "onnxruntime"): (
                lambda x: ref_ort.predict_proba(x),
                normalised(batch_u8).numpy(),
                normalised(single_u8).numpy(),
            ),
        }
        for name, est in models.items():
            ort = OnnxPredictor.from_module(est.model_, (28, 28), n_threads=args.threads)
            paths[(name, "torch")] = (est.predict_proba, batch_u8, single_u8)
            paths[(name, "onnxruntime")] = (ort.predict_proba, batch_f, single_f)
        print(f"{'model':10s} {'backend':12s} {'images/s @1000':>18s} {'latency ms':>11s} {'p90':>6s}")
        for (name, backend), (fn, batch, single) in paths.items():
            r = inference(fn, batch, single, args.trials)
            results.setdefault("inference", []).append({"model": name, "backend": backend, **r})
            print(
                f"{name:10s} {backend:12s} {r['images_per_s']:10.0f} ± {r['images_per_s_sd']:5.0f} "
                f"{r['latency_ms']:11.2f} {r['latency_ms_p90']:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
