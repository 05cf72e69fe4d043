"""Build the reader shipped in ``src/mnistlab/pretrained/`` (``make pretrained``).

Everything is trained by mnistlab's own code from MNIST with a fixed seed, in
this order, and written with a card that records how:

1. the not-a-digit detector on the first ``FIT_DIGITS`` training digits (some
   of them again in other pens) and generated non-digits (``trust.detector``),
   exported to ONNX;
2. the PCA digit space on every third of those digits;
3. the score thresholds on the last 10,000 training digits (which fitted
   neither) and on non-digits drawn with a seed the detector never saw;
4. the classifier on all 60,000 training digits, some of them again written
   with a marker or a hair-thin pen and read back, some 1s again with a flag,
   and digits printed in fonts,
   with augmentation for other hands (slant, pens), exported to ONNX, and its
   probability cut on the MNIST test set (one half sets it, the other measures it).

    python -m mnistlab.lab.pretrained --out src/mnistlab/pretrained --seed 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from joblib.externals.loky import ProcessPoolExecutor
from safetensors.numpy import save as save_safetensors

from mnistlab._atomic import atomic_write_together
from mnistlab._processes import exit_with_parent
from mnistlab.data.load import load_mnist
from mnistlab.errors import MnistlabError, ModelFileError, ParameterError
from mnistlab.lab.record import package_versions
from mnistlab.models.cards import card_sha256
from mnistlab.models.cnn.estimator import CNNClassifier
from mnistlab.models.cnn.hyper import Hyper
from mnistlab.models.cnn.onnx import export_onnx
from mnistlab.models.recipes import CNN
from mnistlab.trust.calibration import probability_cut_for
from mnistlab.trust.detector import DETECTOR, FIT_DIGITS, fit_detector, held_out_non_digits, training_set
from mnistlab.trust.drawings import (
    FONT_PACKAGES,
    HANDWRITING_FONTS,
    flag_ones,
    font_paths,
    glyphs,
    restroked_sample,
)
from mnistlab.trust.reader import CARD_FILE, FORMAT_VERSION, OnnxNet, Reader
from mnistlab.trust.scores import fit_digit_space
from mnistlab.trust.thresholds import ProbabilityCut, Thresholds, calibrate_thresholds, flags

__all__ = ["CLASSIFIER", "Plan", "build_reader", "write_reader"]

# The shipped classifier: the `cnn` recipe's net, two more epochs, and augmentation for other hands.
CLASSIFIER = replace(CNN, epochs=6, augment="hands")
PRINTED_COPIES = 20  # per digit and font: ~4,000 digits in shapes MNIST's writers rarely used (a barred 7, a flagged 1)


def _onnx_bytes(estimator: CNNClassifier) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return export_onnx(estimator, Path(tmp) / "net.onnx").read_bytes()


def _say(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)


@dataclass(frozen=True)
class Plan:
    """How much to train: the defaults build the shipped reader; a test builds a tiny one the same way."""

    seed: int = 0
    fit_digits: int = FIT_DIGITS  # MNIST training digits for the detector and the digit space
    detector_strokes: int = 10_000  # random pen strokes (and a sixth as much noise) among its non-digits
    detector_copies: int = 6  # each letter drawn so often in each font (printed digits twice) for the detector
    # Digits written again with a marker or a hair-thin pen and read back (``restroked``), for the detector
    # and for the classifier: reading gives such strokes a look that MNIST's own digits never have.
    restroked_digits: int = 5_000
    detector: Hyper = DETECTOR
    classifier: Hyper = CLASSIFIER
    # Two nets, the second reading deskewed digits: they miss different digits, and
    # their average is less often sure of a wrong answer (CNNClassifier's inputs="mixed").
    classifier_members: int = 2
    classifier_digits: int | None = None  # MNIST training digits for the classifier (None: all)
    printed_copies: int = PRINTED_COPIES
    # MNIST 1s written again with a flag (a third with a foot) for the classifier: it read a flagged 1 as a
    # 7. On dev seed 12 (1,800 digits by other hands) right 98.1 -> 98.6%, confident and wrong 1.1 -> 0.8%.
    flagged_ones: int = 3_000


def _detector_graph(plan: Plan, digits: np.ndarray, labels: np.ndarray) -> bytes:
    """The detector fitted on ``digits`` and drawn non-digits, exported (ONNX bytes); runs in a process of its own,
    beside the classifier's fit."""
    images, y = training_set(
        digits,
        labels,
        seed=plan.seed,
        copies=plan.detector_copies,
        n_strokes=plan.detector_strokes,
        n_restroked=plan.restroked_digits,
    )
    return _onnx_bytes(fit_detector(images, y, plan.detector, seed=plan.seed))


def _thresholds(reader: Reader, train: np.ndarray, others: np.ndarray) -> Thresholds:
    """Thresholds from the last training digits, which fit nothing (``FIT_DIGITS`` on), and non-digits of an unseen
    seed. The same 10,000 for any plan: a tiny one fitting on 2,000 scored all 58,000 others, its slowest step."""
    held = train[FIT_DIGITS:]
    method = (
        f"{len(held)} MNIST training digits that fitted neither the detector nor the digit space; "
        f"the detector's share chosen on {len(others)} non-digits drawn with a seed it never saw"
    )
    return calibrate_thresholds(reader.scores(held), reader.scores(others), method)


def _classifier(plan: Plan, train: np.ndarray, labels: np.ndarray) -> tuple[OnnxNet, int]:
    """The classifier on MNIST digits (some again in other pens) and printed digits; returns it and how many
    printed digits it saw."""
    rng = np.random.default_rng(plan.seed + 1)
    printed, printed_labels = glyphs("0123456789", rng, copies=plan.printed_copies)
    digits, digit_labels = train[: plan.classifier_digits], labels[: plan.classifier_digits]
    again, again_labels = restroked_sample(digits, digit_labels, plan.restroked_digits, rng)
    ones = digits[digit_labels == 1]
    flagged = flag_ones(ones[rng.choice(len(ones), min(plan.flagged_ones, len(ones)), replace=False)], rng)
    X = np.concatenate([digits, again, printed, flagged]).reshape(-1, 784)
    y = np.concatenate([digit_labels, again_labels, printed_labels, np.ones(len(flagged), np.int64)])
    members = plan.classifier_members
    clf = CNNClassifier(
        **asdict(plan.classifier),
        n_members=members,
        inputs="mixed" if members > 1 else "raw",
        n_jobs=-1,
        random_state=plan.seed,
        n_threads=1,
    ).fit(X, y)
    return OnnxNet(_onnx_bytes(clf)), len(printed)


def _nets(plan: Plan, train: np.ndarray, labels: np.ndarray, start: float) -> tuple[OnnxNet, int, OnnxNet, np.ndarray]:
    """The classifier (and how many printed digits it saw), the detector, fitted side by side, and the held-out
    non-digits that calibrate the thresholds.

    The detector's fit runs on one thread for most of the build: beside it, the classifier's members fit, then
    the held-out non-digits are drawn (their own seed: the same images in any order). Each net has its own seeds
    and one thread, so the files are those of one fit after the other. The detector's process ends with this
    one, and is stopped if the classifier's fit fails (as the members' are).
    """
    k = plan.fit_digits
    pool = ProcessPoolExecutor(max_workers=1, initializer=exit_with_parent, initargs=(os.getpid(),))
    try:
        _say(f"fitting the not-a-digit detector on {k:,} digits and drawn non-digits", start)
        detector_graph = pool.submit(_detector_graph, plan, train[:k], labels[:k])
        _say(
            f"fitting the classifier on {len(train[: plan.classifier_digits]):,} MNIST digits (some again in other "
            "pens, 1s with a flag), printed ones",
            start,
        )
        classifier, n_printed = _classifier(plan, train, labels)
        others = held_out_non_digits(train[:k], labels[:k])
        detector = OnnxNet(detector_graph.result())
    except BaseException:
        pool.shutdown(wait=False, kill_workers=True)
        raise
    pool.shutdown(wait=True)
    return classifier, n_printed, detector, others


def build_reader(out: Path, plan: Plan | None = None) -> dict:
    """Train every part of the reader, write its files and card into ``out``; return the card."""
    plan, start = plan or Plan(), time.perf_counter()
    if plan.fit_digits > FIT_DIGITS:  # the thresholds' digits must be ones nothing fitted on
        raise ParameterError(
            "fit_digits",
            f"{{param}} must be at most {FIT_DIGITS:,}: the training digits after them set the thresholds.",
        )
    data = load_mnist("mnist")
    n = data.details["n_train"]
    train, labels = np.asarray(data.images[:n]), np.asarray(data.target[:n])
    test, test_labels = np.asarray(data.images[n:]), np.asarray(data.target[n:])
    k = plan.fit_digits
    classifier, n_printed, detector, others = _nets(plan, train, labels, start)
    space = fit_digit_space(train[:k:3])
    unfinished = Reader(detector, detector, space, Thresholds({}, {}, 0.0, ""), ProbabilityCut(0.0, 0.0, 0.0, ""), {})
    _say("calibrating the not-a-digit thresholds", start)
    thresholds = _thresholds(unfinished, train, others)
    reader = replace(unfinished, classifier=classifier, thresholds=thresholds)
    cut = probability_cut_for(classifier.proba, reader, test, "the MNIST test set")
    blobs = {
        "classifier.onnx": classifier.model_bytes,
        "detector.onnx": detector.model_bytes,
        "space.safetensors": save_safetensors({"mean": space.mean, "components": space.components}),
    }
    flagged = lambda images: float(flags(reader.scores(images), thresholds.lower, thresholds.upper).mean())  # noqa: E731
    card = {
        "format_version": FORMAT_VERSION,
        "name": "mnistlab default reader",
        "plan": asdict(plan),
        "data_sha256": data.details["data_sha256"],
        # The fonts its printed digits and letters were drawn in shape it as the data does.
        "fonts_sha256": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in font_paths()},
        "versions": package_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
        "classifier": {"printed_digits": n_printed, "classes": list(range(10)), "probability_cut": cut.to_json()},
        "thresholds": thresholds.to_json(),
        "metrics": {
            "classifier_test_accuracy": float((classifier.proba(test).argmax(1) == test_labels).mean()),
            "mnist_test_flagged_not_a_digit": flagged(test),
            "held_out_non_digits_flagged": flagged(others),
        },
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    card["card_sha256"] = card_sha256(card)
    write_reader(out, blobs, card)
    _say(f"wrote {out}: {json.dumps(card['metrics'])}", start)
    return card


def write_reader(out: Path, blobs: dict[str, bytes], card: dict) -> None:
    """Write the reader's files (name -> bytes) and its card into ``out``, all of them or (a full disk, Ctrl+C)
    none: written one after another, a build that failed after the first left new nets beside the old card, which
    refused them, and the reader there was lost."""
    files = {**blobs, CARD_FILE: (json.dumps(card, indent=2, sort_keys=True) + "\n").encode()}
    try:
        atomic_write_together(out, files)
    except OSError as exc:
        raise ModelFileError(
            f"Cannot write the reader into {out} ({exc.strerror or exc}), so the files there are as they were; free "
            "space there, or choose another --out."
        ) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (src/mnistlab/pretrained)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:  # tried before the build's hour, not after it
        args.out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as exc:
        parser.error(f"cannot write in --out {args.out} ({exc.strerror or exc}); choose a folder you can write to")
    missing = [Path(name).name for name in HANDWRITING_FONTS if not Path(name).is_file()]
    if missing:  # ``glyphs`` would leave them out, and the reader built would not be the shipped one
        parser.error(
            f"the handwriting fonts {', '.join(missing)} are missing; install them: apt-get install {FONT_PACKAGES}"
        )
    try:
        build_reader(args.out, Plan(seed=args.seed))
    except MnistlabError as exc:  # no data, a disk that filled: one line, not a traceback
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
