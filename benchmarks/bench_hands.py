"""Reading hands MNIST never saw: per source and surface, digits right, flagged, confident and wrong.

    MNISTLAB_DATA=../shared/data/mnist nice .venv/bin/python benchmarks/bench_hands.py \
        [--model DIR] [--recipe knn-deskew] [--n 50] [--numbers 30] [--non-digits 50] [--marked 20] \
        [--mnist 5000] [--seed 0] [--cpu-passes 3] [--json] [--json-out FILE]

Model: ``--model DIR`` (a folder written by ``mnistlab train``), else the
reader ``mnistlab.predict_image`` uses with ``model=None``; where that finds
none, ``--recipe`` is fitted here on the 60,000 training digits (and said so).

Images (``mnistlab.testing.hands``, none of them MNIST's): ``--n`` single
digits per source and surface (sources ``pen``, ``fonts``, ``optdigits``;
surfaces: three canvas exports, photos of plain, ruled and squared paper),
``--numbers`` rows of 3-6 digits per source (random surfaces), and
``--non-digits`` images per non-digit kind (letters, words, symbols, doodles,
Fashion-MNIST items, empty pages, two digits side by side), ``--marked`` rows
per source (pen, fonts) and mark holding a decimal point, comma, colon, dash or
minus sign (``marked_number_samples``, from a generator of their own). Also ``--mnist``
MNIST test digits, as 28x28 arrays, from the half of the test set that set no
probability cut (``mnistlab.trust.calibration.mnist_test_halves``: the
shipped reader's cut, ``mnistlab train``'s and ``calibrate_on_mnist``'s are
all set on the other half), in that half's random order.

Figures: single digits right, flagged "not confident", and confident and
wrong, per source, per surface and per style (pen style, font); numbers read
exactly (and with the right count of digits), flagged (``read_number``'s
"confident": false) and read confidently but wrong; non-digits flagged per kind,
with the commonest confident answers; numbers with a mark flagged; MNIST test digits flagged; CPU ms per
photo (``time.process_time`` around one ``predict_image`` call: decode,
``to_mnist``, classify, confidence), BLAS/OpenMP and torch held to one
thread (OpenCV's pool too). Spread: 95% Wilson intervals (scipy's ``binomtest``, through
``rates.py``); one run of one seed. The CPU a photo is the mean
over ``--cpu-passes`` reads of every single-digit photo (the first pass's
answers are the ones counted; the later ones must give the same), printed
with each pass's mean: on a shared or virtual machine one pass can be a
fifth off another. The machine and the load
average at start and end are printed with the figures, and, as a yardstick
of the machine's speed, the shipped classifier's time for one image (median
of 1,000 runs in this process): the CPU a photo moves with it from one
machine to another.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one, at_least_zero, recipe_name
from mnistlab import ModelFileError, get_recipe, load_mnist, predict_array, predict_image, read_number
from mnistlab.testing.hands import (
    DIGIT_SOURCES,
    MARKS,
    NON_DIGIT_SOURCES,
    SURFACES,
    digit_samples,
    marked_number_samples,
    non_digit_samples,
    number_samples,
)
from mnistlab.trust.calibration import mnist_test_halves
from mnistlab.trust.reader import load_reader as load_shipped_reader
from rates import rate  # benchmarks/rates.py, beside this script

TARGETS = "targets: digits right >= 98%, flagged <= 2%, confident and wrong <= 0.5%; numbers exact >= 95%; " \
    "every non-digit kind flagged >= 95%; MNIST test digits flagged <= 1%; <= 5 CPU ms per photo"  # fmt: skip


def load_reader(args) -> tuple[object, str]:
    """The ``model`` argument to pass to ``predict_image`` and a line saying what it is.

    The reader is loaded (and calibrated, where it must be) here, by reading one
    empty image, so that the timings below are of reading only.
    """
    name = "the default reader (predict_image with model=None)"
    try:
        predict_array(np.zeros((28, 28), np.uint8), args.model)
    except ModelFileError as exc:
        if args.model:  # a folder that is no model: mnistlab's one line, as `mnistlab predict --model` says it
            print(f"bench_hands.py: error: argument --model: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        if args.model:
            card = json.loads((Path(args.model) / "model.json").read_text())
            name = f"{card.get('recipe')} ({args.model})"
        return args.model, name
    data = load_mnist("mnist")
    n = data.details["n_train"]
    est = get_recipe(args.recipe).build(args.seed, os.cpu_count() or 1).fit(data.data[:n], data.target[:n])
    predict_array(np.zeros((28, 28), np.uint8), est)
    return est, f"{args.recipe} fitted here on the 60,000 training digits (no default reader found)"


def read_digits(samples, reader, passes: int = 1) -> tuple[list[dict], list[float]]:
    """One row per sample: where it came from, what was read, and the CPU time a read took (its mean over
    ``passes`` reads of every sample, one pass after the other); and each pass's mean CPU ms a photo."""
    rows, ms = [], np.zeros((passes, len(samples)))
    for p in range(passes):
        for i, s in enumerate(samples):
            start = time.process_time()
            result = predict_image(s.data, reader, top=1)
            ms[p, i] = (time.process_time() - start) * 1000
            answer = (result["digit"], result["confident"])
            if p == 0:
                rows.append({"source": s.source, "surface": s.surface, "style": s.style, "answer": answer})
            elif answer != (first := rows[i]["answer"]):
                raise SystemExit(f"pass {p + 1} read {s.source} sample {i} as {answer}, pass 1 as {first}")
    for r, s, cost in zip(rows, samples, ms.mean(axis=0)):
        digit, confident = r.pop("answer")
        r.update(right=digit == s.label, flagged=not confident, confident_wrong=confident and digit != s.label, ms=cost)
    return rows, ms.mean(axis=1).tolist()


def summarise(rows: list[dict]) -> dict:
    return {
        "right": rate([r["right"] for r in rows]),
        "flagged": rate([r["flagged"] for r in rows]),
        "confident_wrong": rate([r["confident_wrong"] for r in rows]),
        "cpu_ms_mean": round(float(np.mean([r["ms"] for r in rows])), 2),
        "cpu_ms_median": round(float(np.median([r["ms"] for r in rows])), 2),
    }


def digits_report(rows: list[dict]) -> dict:
    """Per source: all of it, per surface and per style; then all sources together."""
    out = {}
    for source in DIGIT_SOURCES:
        mine = [r for r in rows if r["source"] == source]
        by = {key: defaultdict(list) for key in ("surface", "style")}
        for r in mine:
            by["surface"][r["surface"]].append(r)
            by["style"][r["style"]].append(r)
        out[source] = {
            "all": summarise(mine),
            "surfaces": {k: summarise(v) for k, v in by["surface"].items()},
            "styles": {k: summarise(v) for k, v in sorted(by["style"].items())},
        }
    out["all"] = summarise(rows)
    return out


def numbers_report(args, rng, reader) -> dict:
    out = {}
    for source in DIGIT_SOURCES:
        exact, count, flagged, confident_wrong = [], [], [], []
        for s in number_samples(source, args.numbers, rng):
            answer = read_number(s.data, reader)
            got = answer["number"]
            exact.append(got == s.label)
            count.append(len(got) == len(s.label))
            flagged.append(not answer["confident"])
            confident_wrong.append(answer["confident"] and got != s.label)
        out[source] = {
            "exact": rate(exact),
            "digit_count_right": rate(count),
            "flagged": rate(flagged),
            "confident_wrong": rate(confident_wrong),
        }
    return out


def marked_numbers_report(args, reader) -> dict:
    """Rows holding a point, comma, colon, dash or minus sign, per source and mark: flagged, and read
    confidently without the mark. Drawn from a generator of their own (seed, 1), so that the other figures
    stay those of runs before this part."""
    rng = np.random.default_rng([args.seed, 1])
    out = {}
    for source in ("pen", "fonts"):
        flagged: dict[str, list[bool]] = defaultdict(list)
        for mark in MARKS:
            for s in marked_number_samples(source, args.marked, rng, mark=mark):
                flagged[mark].append(not read_number(s.data, reader)["confident"])
        out[source] = {mark: rate(v) for mark, v in flagged.items()}
        out[source]["all"] = rate([f for v in flagged.values() for f in v])
    return out


def non_digits_report(args, rng, reader) -> dict:
    out = {}
    for kind in NON_DIGIT_SOURCES:
        flags, answers = [], Counter()
        for s in non_digit_samples(kind, args.non_digits, rng):
            result = predict_image(s.data, reader, top=1)
            flags.append(not result["confident"])
            if result["confident"]:
                answers[f"{s.label}->{result['digit']}"] += 1
        out[kind] = {"flagged": rate(flags), "confident_answers": dict(answers.most_common(6))}
    return out


def mnist_report(n: int, reader) -> dict:
    """Flagged among ``n`` MNIST test digits that no probability cut was set on (the evaluation half)."""
    images, _, _, evaluation = mnist_test_halves()
    chosen = evaluation[:n]
    flags = [not predict_array(images[i], reader, top=1)["confident"] for i in chosen]
    return {"held_out": len(chosen), "of": len(evaluation), "flagged": rate(flags)}


def yardstick_ms(runs: int = 1000) -> float | None:
    """The shipped classifier's time for one 28x28 image, in ms (median of ``runs`` after 100 to warm up);
    None where the shipped reader cannot be loaded (a recipe was fitted here instead)."""
    try:
        net = load_shipped_reader().classifier
    except ModelFileError:
        return None
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 4:24, 12:16] = 255  # a 1: any image costs the same
    times = []
    for _ in range(runs + 100):
        start = time.perf_counter()
        net.proba(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times[100:]) * 1000)


def measure(args) -> dict:
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    reader, model_name = load_reader(args)
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    cv2.setNumThreads(1)  # OpenCV's own pool: idle, its threads spin on the second core and count as CPU
    with threadpool_limits(limits=1):
        if "torch" in sys.modules:  # a CNN reader: torch keeps its own thread pool
            sys.modules["torch"].set_num_threads(1)
        samples = [
            s for src in DIGIT_SOURCES for surface in SURFACES for s in digit_samples(src, args.n, rng, surface=surface)
        ]
        rows, pass_ms = read_digits(samples, reader, args.cpu_passes)
        digits = digits_report(rows)
        numbers = numbers_report(args, rng, reader)
        non_digits = non_digits_report(args, rng, reader)
        marked = marked_numbers_report(args, reader)
        mnist = mnist_report(args.mnist, reader)
        yardstick = yardstick_ms()
    return {
        "benchmark": "bench_hands",
        "machine": f"{machine.describe()}, numpy {np.__version__}",
        "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "shipped_classifier_one_image_ms": None if yardstick is None else round(yardstick, 3),
        "model": model_name,
        "model_setup_seconds": round(setup_s, 1),
        "seed": args.seed,
        "n_per_source_and_surface": args.n,
        "cpu_ms_per_pass": [round(m, 2) for m in pass_ms],
        "digits": digits,
        "numbers": numbers,
        "non_digits": non_digits,
        "marked_numbers": marked,
        "mnist_test": mnist,
    }


def pct(r: dict) -> str:
    return f"{r['rate']:6.1%} ({r['ci95'][0]:.1%}-{r['ci95'][1]:.1%})"


def print_table(result: dict) -> None:
    print(
        f"machine: {result['machine']}; load average {result['load_average'][0]} at start, {result['load_average'][1]} at end"
    )
    yardstick = result["shipped_classifier_one_image_ms"]
    if yardstick is not None:
        print(f"its speed: the shipped classifier reads one image in {yardstick:.3f} ms")
    print(
        f"model: {result['model']} (setup {result['model_setup_seconds']} s); seed {result['seed']}, one run, 95% Wilson intervals"
    )
    print(f"\nsingle digits, {result['n_per_source_and_surface']} per source and surface")
    print(
        f"{'source / surface / style':30s} {'n':>5s}  {'right':22s} {'flagged':22s} {'confident and wrong':22s} {'CPU ms':>6s}"
    )
    digits = result["digits"]

    def line(name: str, s: dict) -> None:
        cells = "  ".join(f"{pct(s[k]):21s}" for k in ("right", "flagged", "confident_wrong"))
        print(f"{name:30s} {s['right']['n']:5d}  {cells} {s['cpu_ms_mean']:6.1f}")

    for source in DIGIT_SOURCES:
        line(source, digits[source]["all"])
        for surface, s in digits[source]["surfaces"].items():
            line(f"  {surface}", s)
        for style, s in digits[source]["styles"].items():
            line(f"  style {style}", s)
    line("all sources", digits["all"])
    passes = result["cpu_ms_per_pass"]
    print(
        f"CPU ms a photo: {digits['all']['cpu_ms_mean']:.2f}, the mean of {len(passes)} pass(es) over these photos "
        f"({', '.join(f'{m:.2f}' for m in passes)})"
    )
    print(
        f"\nnumbers of 3-6 digits {'':8s} {'n':>5s}  {'exact':22s} {'count of digits right':22s} "
        f"{'flagged':22s} {'confident and wrong':22s}"
    )
    for source, s in result["numbers"].items():
        cells = "  ".join(f"{pct(s[k]):21s}" for k in ("exact", "digit_count_right", "flagged", "confident_wrong"))
        print(f"{source:30s} {s['exact']['n']:5d}  {cells}")
    print(f"\nnon-digits {'':19s} {'n':>5s}  {'flagged':22s} commonest confident answers")
    for kind, s in result["non_digits"].items():
        answers = ", ".join(f"{k} x{v}" for k, v in s["confident_answers"].items())
        print(f"{kind:30s} {s['flagged']['n']:5d}  {pct(s['flagged']):21s}  {answers}")
    print(f"\nnumbers with a mark {'':10s} {'n':>5s}  {'flagged':22s} by mark")
    for source, s in result["marked_numbers"].items():
        by_mark = ", ".join(f"{mark} {s[mark]['rate']:.0%}" for mark in MARKS)
        print(f"{source:30s} {s['all']['n']:5d}  {pct(s['all']):21s}  {by_mark}")
    m = result["mnist_test"]
    print(f"\nMNIST test digits that set no cut ({m['held_out']} of the {m['of']:,}) flagged: {pct(m['flagged'])}")
    print(TARGETS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a saved model folder (default: the reader predict_image uses)")
    ap.add_argument(
        "--recipe", default="knn-deskew", type=recipe_name, help="fitted here when there is no reader at all"
    )
    ap.add_argument("--n", type=at_least_one, default=50, help="single digits per source and surface")
    ap.add_argument("--numbers", type=at_least_zero, default=30, help="rows of digits per source")
    ap.add_argument("--non-digits", type=at_least_zero, default=50, help="images per non-digit kind")
    ap.add_argument(
        "--marked", type=at_least_zero, default=20, help="rows with a point, comma, colon or dash per source and mark"
    )
    ap.add_argument(
        "--mnist", type=at_least_zero, default=5000, help="MNIST test digits that set no cut (at most 5,000)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cpu-passes", type=at_least_one, default=3, help="reads of every single-digit photo, for its CPU ms"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--json-out", help="also write the JSON to this file")
    args = ap.parse_args()
    result = measure(args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
