"""Reading photos of handwriting: resize-and-flatten against ``to_mnist``, same model, one run.

Usage:
    python benchmarks/bench_photos.py [--model DIR | --recipe NAME] [--photos 300] [--numbers 100]
                                      [--non-digits 60] [--seed 0] [--json]

Default model: the reader shipped with mnistlab; ``--model DIR`` a saved model,
``--recipe NAME`` a recipe fitted here on the 60,000 training digits. All
generated images come from MNIST test digits of the *evaluation* half (the
half the shipped probability cut was not set on), through
``mnistlab.testing``: paper photos (JPEG, textured, unevenly lit, rotated,
off-centre) and canvas exports (PNG, black on white, white on black, RGBA).

Figures: accuracy of the naive answer (grey, resize to 28x28, flatten; also
with the colours inverted) and of ``to_mnist`` on the same photos, and on the
paper photos again as a sheet lying on a dark table; numbers read
exactly; non-digit images flagged (per kind); MNIST test digits flagged (both
calibration halves); time per image. Spread: 95% Wilson intervals, one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time

import numpy as np
from PIL import Image

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one, at_least_zero
from rates import rate  # benchmarks/rates.py, beside this script


def naive(data: bytes) -> np.ndarray:
    """The usual advice: open as grayscale, resize to 28x28, flatten."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((28, 28))).reshape(784)


def paper_on_table(predictor, photos: list[bytes], truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper photos (JPEG; canvas exports are PNG) again, taken from further away: the sheet on a dark
    table. Whether each is read right; none where the photos hold no paper one (``--photos 2`` may not)."""
    from mnistlab import to_mnist
    from mnistlab.testing import place_on_table

    paper = [k for k, p in enumerate(photos) if p[:2] == b"\xff\xd8"]
    if not paper:
        return np.zeros(0, bool)
    images = np.stack([to_mnist(place_on_table(photos[k], rng)) for k in paper])
    return np.array([r["digit"] for r in predictor.describe(images, top=1)]) == truth[paper]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a saved model folder (default: the shipped reader)")
    ap.add_argument("--recipe", help="a recipe to fit here on the 60,000 training digits instead")
    ap.add_argument("--photos", type=at_least_one, default=300, help="at most 5,000")
    ap.add_argument("--numbers", type=at_least_zero, default=100)
    ap.add_argument("--non-digits", type=at_least_one, default=60, help="images per non-digit kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from mnistlab import ModelFileError, RecipeError, get_recipe, load_mnist, to_mnist
    from mnistlab.reading.segment import segment_digits
    from mnistlab.testing import NON_DIGIT_KINDS, make_non_digit, make_number_photo, make_photo
    from mnistlab.trust.calibration import mnist_test_halves
    from mnistlab.trust.predict import load_predictor

    data = load_mnist("mnist")
    n_train = data.details["n_train"]
    t0 = time.perf_counter()
    try:  # an unknown recipe, a folder that is no model: mnistlab's one sentence, as a usage error
        recipe = get_recipe(args.recipe) if args.recipe else None
        predictor = None if recipe else load_predictor(args.model)
    except (RecipeError, ModelFileError) as exc:
        ap.error(f"argument {'--recipe' if args.recipe else '--model'}: {exc}")
    if recipe:
        est = recipe.build(args.seed, os.cpu_count() or 1)
        est.fit(data.data[:n_train], data.target[:n_train])
        predictor = load_predictor(est)
        model_name = f"{args.recipe} fitted here on the 60,000 training digits"
    else:
        model_name = f"{predictor.card.get('recipe') or predictor.card.get('name')} ({args.model or 'shipped'})"
    setup_s = time.perf_counter() - t0

    def model_predict(rows: np.ndarray) -> np.ndarray:
        return predictor.classify(np.asarray(rows, np.uint8).reshape(-1, 28, 28)).argmax(1)

    test, _, cal_idx, eval_idx = mnist_test_halves()
    labels = np.asarray(data.target[n_train:])
    rng = np.random.default_rng(args.seed)
    if args.photos > len(eval_idx):
        ap.error(f"argument --photos: at most {len(eval_idx):,} (the test digits no cut was set on), not {args.photos}")
    pick = rng.choice(eval_idx, args.photos, replace=False)

    # Single digits: the same photos through both paths, the same model.
    photos = [make_photo(test[i], rng) for i in pick]
    t = time.perf_counter()
    ours_images = np.stack([to_mnist(p) for p in photos])
    to_mnist_ms = (time.perf_counter() - t) / len(photos) * 1000
    ours = predictor.describe(ours_images, top=1)
    naive_x = np.stack([naive(p) for p in photos])
    truth = labels[pick]
    right_ours = np.array([r["digit"] for r in ours]) == truth
    right_naive = model_predict(naive_x) == truth
    right_naive_inv = model_predict(255 - naive_x) == truth
    photo_flagged = np.array([not r["confident"] for r in ours])
    right_table = paper_on_table(predictor, photos, truth, rng)

    # Numbers: rows of 3 to 6 digits.
    exact, count_right = [], []
    t = time.perf_counter()
    for _ in range(args.numbers):
        idx = rng.choice(eval_idx, int(rng.integers(3, 7)), replace=False)
        digits = segment_digits(make_number_photo(test[idx], rng))
        got = "".join(str(r["digit"]) for r in predictor.describe(np.stack(digits), top=1)) if digits else ""
        exact.append(got == "".join(map(str, labels[idx])))
        count_right.append(len(digits) == len(idx))
    number_ms = (time.perf_counter() - t) / max(args.numbers, 1) * 1000

    # Non-digits, per kind.
    per_kind = {}
    all_flags = []
    for kind in NON_DIGIT_KINDS:
        images = np.stack([to_mnist(make_non_digit(kind, rng)) for _ in range(args.non_digits)])
        flags = [not r["confident"] for r in predictor.describe(images, top=1)]
        per_kind[kind] = rate(flags)
        all_flags += flags

    # MNIST test digits as they are (784 values), both halves.
    mnist_eval = [not r["confident"] for r in predictor.describe(test[eval_idx], top=1)]
    mnist_cal = [not r["confident"] for r in predictor.describe(test[cal_idx], top=1)]

    result = {
        "benchmark": "bench_photos",
        "machine": machine.describe(),
        "model": model_name,
        "model_setup_seconds": round(setup_s, 1),
        "seed": args.seed,
        "single_digit_photos": {
            "to_mnist_accuracy": rate(right_ours),
            "naive_accuracy": rate(right_naive),
            "naive_inverted_accuracy": rate(right_naive_inv),
            "to_mnist_flagged": rate(photo_flagged),
            "to_mnist_accuracy_when_confident": rate(right_ours[~photo_flagged]),
            "to_mnist_ms_per_image": round(to_mnist_ms, 1),
            "to_mnist_accuracy_paper_on_table": rate(right_table),
        },
        "numbers": {"exact": rate(exact), "digit_count_right": rate(count_right), "ms_per_number": round(number_ms, 1)},
        "non_digits_flagged": {"all": rate(all_flags), **per_kind},
        "mnist_test_flagged": {"evaluation_half": rate(mnist_eval), "calibration_half": rate(mnist_cal)},
        "calibration": {
            "method": predictor.cut.method,
            "min_probability": predictor.cut.min_probability,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    pct = lambda r: f"{r['rate']:.1%} (95% CI {r['ci95'][0]:.1%}-{r['ci95'][1]:.1%}, n={r['n']})"  # noqa: E731
    s = result["single_digit_photos"]
    print(f"machine: {result['machine']}\nmodel: {model_name} (setup {setup_s:.1f} s), seed {args.seed}, one run")
    print(f"single-digit photos, naive resize+flatten: {pct(s['naive_accuracy'])}")
    print(f"single-digit photos, naive inverted:       {pct(s['naive_inverted_accuracy'])}")
    print(
        f"single-digit photos, to_mnist:             {pct(s['to_mnist_accuracy'])}  ({s['to_mnist_ms_per_image']} ms/image)"
    )
    print(
        f"  flagged not confident: {pct(s['to_mnist_flagged'])}; accuracy when confident {pct(s['to_mnist_accuracy_when_confident'])}"
    )
    print(f"  the paper photos again, sheet on a dark table: {pct(s['to_mnist_accuracy_paper_on_table'])}")
    print(
        f"numbers read exactly: {pct(result['numbers']['exact'])}; digit count right {pct(result['numbers']['digit_count_right'])}"
    )
    print(f"non-digit images flagged: {pct(result['non_digits_flagged']['all'])}")
    for kind in NON_DIGIT_KINDS:
        print(f"  {kind:9s} {pct(per_kind[kind])}")
    print(f"MNIST test digits flagged, evaluation half: {pct(result['mnist_test_flagged']['evaluation_half'])}")
    print(f"MNIST test digits flagged, calibration half: {pct(result['mnist_test_flagged']['calibration_half'])}")


if __name__ == "__main__":
    main()
