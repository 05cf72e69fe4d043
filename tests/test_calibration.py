"""Thresholds of the not-a-digit scores and of a classifier's probability, calibrated on held-out digits."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mnistlab.trust.calibration import halves
from mnistlab.trust.scores import SCORES
from mnistlab.trust.thresholds import (
    NO_INK,
    OOD_RATE,
    TOTAL_RATE,
    ProbabilityCut,
    Thresholds,
    assess,
    calibrate_probability,
    calibrate_thresholds,
    flags,
)


def _fake_scores(rng, n, shift_detector=0.0, shift_fixed=0.0):
    """(n, 5) scores: four fixed ones and the detector's (last), all larger for non-digits."""
    s = rng.normal(size=(n, len(SCORES)))
    s[:, -1] += shift_detector
    s[:, :-1] += shift_fixed
    return s


@pytest.mark.parametrize("who, lo, hi", [("detector", 0.7, 1.0), ("fixed", 0.0, 0.3)])
def test_the_budget_goes_to_the_score_that_catches_non_digits(who, lo, hi):
    assert SCORES[-1] == "not_a_digit"
    rng = np.random.default_rng(0)
    digits = _fake_scores(rng, 10000)
    others = _fake_scores(rng, 2000, **({"shift_detector": 3.0} if who == "detector" else {"shift_fixed": 3.0}))
    thresholds = calibrate_thresholds(digits, others, "test")
    assert lo <= thresholds.detector_share <= hi
    # Whatever the share, the digits flagged stay at the budget.
    assert flags(digits, thresholds.lower, thresholds.upper).mean() == pytest.approx(OOD_RATE, abs=0.0005)
    assert flags(others, thresholds.lower, thresholds.upper).mean() > 0.5


def test_the_probability_cut_flags_the_least_sure_up_to_the_total_rate():
    rng = np.random.default_rng(1)
    digits = _fake_scores(rng, 20000)
    thresholds = calibrate_thresholds(digits[:10000], _fake_scores(rng, 1000, shift_detector=3.0), "test")
    proba = rng.dirichlet(np.full(10, 0.1), 10000)
    cal, ev = halves(10000)
    # (These fake detector scores are not probabilities: the probability alone is the measure here.)
    cut = calibrate_probability(thresholds, digits[10000:], proba, cal, ev, "test", measure="probability")
    assert 0 < cut.min_probability < 1
    assert cut.flag_rate_calibration == pytest.approx(TOTAL_RATE, abs=0.0005)
    assert 0.004 <= cut.flag_rate_evaluation <= 0.014


def test_the_cut_weighs_the_probability_by_how_digit_shaped_the_detector_finds_the_image():
    rng = np.random.default_rng(3)
    n = 4000
    scores = np.zeros((n, len(SCORES)))
    scores[:, -1] = rng.uniform(0, 0.4, n)  # the detector's not-a-digit probability, under any limit
    proba = rng.dirichlet(np.full(10, 0.1), n)
    no_limits = Thresholds({}, {}, 0.0, "test")
    cal, ev = halves(n)
    cut = calibrate_probability(no_limits, scores, proba, cal, ev, "test")
    assert cut.measure == "probability_x_digit_shape"  # what a new calibration records
    sure = proba.max(1) * (1 - scores[:, -1])
    flagged = [assess(no_limits, cut, s, float(p.max()), ink=True) is not None for s, p in zip(scores, proba)]
    assert np.array_equal(flagged, sure <= cut.min_probability)
    # Between two equally probable answers, the less digit-shaped image is the one flagged.
    p = cut.min_probability + 0.05
    shaped, doubted = np.zeros(len(SCORES)), np.zeros(len(SCORES))
    doubted[-1] = 1 - cut.min_probability / p + 0.01
    assert assess(no_limits, cut, shaped, p, ink=True) is None
    assert (
        assess(no_limits, cut, doubted, p, ink=True)
        == f"not sure it is a digit (probability {p:.2f}, {1 - doubted[-1]:.2f} digit-shaped)"
    )


def test_a_cut_stored_before_it_had_a_measure_compares_the_probability_alone():
    stored = {"min_probability": 0.5, "flag_rate_calibration": 0.008, "flag_rate_evaluation": 0.01, "method": "old"}
    cut = ProbabilityCut(**stored)
    assert cut.measure == "probability"
    doubted = np.zeros(len(SCORES))
    doubted[-1] = 0.4  # 0.6 x 0.6 = 0.36 would be flagged by the newer measure
    no_limits = Thresholds({}, {}, 0.0, "test")
    assert assess(no_limits, cut, doubted, 0.6, ink=True) is None
    assert assess(no_limits, cut, doubted, 0.5, ink=True) == "low probability (0.50)"
    with pytest.raises(ValueError, match="unknown measure"):
        ProbabilityCut(**stored, measure="vibes")


def test_a_cached_cut_no_calibration_gives_is_calibrated_again(tmp_path, monkeypatch, mnist_full):
    """The cache's cut was taken as it was: at a NaN cut every answer was "sure"."""
    from mnistlab.trust.calibration import _cache_path, calibrate_on_mnist
    from mnistlab.trust.reader import load_reader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reader = load_reader()
    path = _cache_path("ab" * 32, reader)
    path.parent.mkdir(parents=True)
    stored = {"min_probability": float("nan"), "flag_rate_calibration": 0.008, "flag_rate_evaluation": 0.01}
    path.write_text(json.dumps({**stored, "method": "damaged", "measure": "probability_x_digit_shape"}))
    cut = calibrate_on_mnist(reader.digit_proba, reader, "ab" * 32)
    assert cut.method.startswith("the MNIST test set") and math.isfinite(cut.min_probability)
    assert json.loads(path.read_text())["min_probability"] == cut.min_probability  # the cache mended


def test_a_cached_cut_edited_or_moved_is_calibrated_again(tmp_path, monkeypatch, mnist_full):
    """The cache held no checksum: a cut edited within range (0.9999: every answer "not sure"; 0: every one
    "sure") was used as found, as was one copied from another model's file."""
    from mnistlab.trust.calibration import _cache_path, _cut_sha256, calibrate_on_mnist
    from mnistlab.trust.reader import load_reader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reader = load_reader()
    classify = _remembered(reader.digit_proba)  # each calibration classifies the same 10,000 digits
    path = _cache_path("ab" * 32, reader)
    cut = calibrate_on_mnist(classify, reader, "ab" * 32)
    saved = json.loads(path.read_text())
    path.write_text(json.dumps(saved | {"min_probability": 0.9999}))
    assert calibrate_on_mnist(classify, reader, "ab" * 32) == cut
    assert json.loads(path.read_text()) == saved  # the cache mended
    # Another cut, signed for this model's file, is taken from it; copied as it is to another model's file, not.
    fields = {k: v for k, v in saved.items() if k != "cut_sha256"} | {"min_probability": 0.9999}
    path.write_text(json.dumps(fields | {"cut_sha256": _cut_sha256(fields, path)}))
    assert calibrate_on_mnist(classify, reader, "ab" * 32).min_probability == 0.9999
    other = _cache_path("cd" * 32, reader)
    other.write_bytes(path.read_bytes())
    assert calibrate_on_mnist(classify, reader, "cd" * 32).min_probability == cut.min_probability


def test_the_readers_scores_of_a_held_out_set_are_cached_and_a_damaged_file_scored_again(tmp_path, monkeypatch):
    """Every `train` scored MNIST's 10,000 test digits with the reader to calibrate its cut (1-2 CPU-seconds),
    though the scores are the same for every model trained on that split: they are cached, checked when read."""
    from mnistlab.trust.calibration import MIN_CACHED_IMAGES, _scores_key, _scores_sha256, held_out_scores
    from mnistlab.trust.reader import load_reader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reader = load_reader()
    images = np.random.default_rng(0).integers(0, 256, (MIN_CACHED_IMAGES, 28, 28), np.uint8)
    scores = held_out_scores(reader, images)
    np.testing.assert_array_equal(scores, reader.scores(images))
    (path,) = (tmp_path / "mnistlab" / "calibration").glob("scores-*.f64")
    written = path.read_bytes()
    # A value damaged on disk fails the file's checksum: the set is scored again and the file mended.
    path.write_bytes(written[:-1] + bytes([written[-1] ^ 1]))
    np.testing.assert_array_equal(held_out_scores(reader, images), scores)
    assert path.read_bytes() == written
    # Whole and checked, the file is what is answered: its scores are not computed again.
    other = np.ascontiguousarray(scores[::-1])
    path.write_bytes(_scores_sha256(_scores_key(reader, images), other.tobytes()).encode() + other.tobytes())
    np.testing.assert_array_equal(held_out_scores(reader, images), other)
    # Another set has a file of its own; a set too small to be worth one is scored, not cached.
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    np.testing.assert_array_equal(held_out_scores(reader, changed), reader.scores(changed))
    np.testing.assert_array_equal(held_out_scores(reader, images[:10]), reader.scores(images[:10]))
    assert len(list(path.parent.glob("scores-*.f64"))) == 2
    # Without a cache folder to be had, the scores are computed: calibrating never needed a cache.
    monkeypatch.setenv("XDG_CACHE_HOME", "~no-such-user-here/cache")
    np.testing.assert_array_equal(held_out_scores(reader, images), scores)


def _remembered(classify):
    """``classify``, its answers for images it was given before given again (a copy) rather than computed again."""
    answers: dict[bytes, np.ndarray] = {}

    def remembered(images: np.ndarray) -> np.ndarray:
        key = hashlib.sha256(np.ascontiguousarray(images).tobytes()).digest() + str(images.shape).encode()
        if key not in answers:
            answers[key] = classify(images)
        return answers[key].copy()

    return remembered


def test_a_named_pipe_in_place_of_a_cached_cut_is_not_waited_on(tmp_path, mnist_full):
    """`predict --model` of a model whose card holds no cut read the cache with read_text: it waited forever."""
    code = textwrap.dedent(
        """
        from mnistlab.trust.calibration import _cache_path, calibrate_on_mnist
        from mnistlab.trust.reader import load_reader

        reader = load_reader()
        path = _cache_path("ab" * 32, reader)
        path.parent.mkdir(parents=True)
        os.mkfifo(path)
        print(calibrate_on_mnist(reader.digit_proba, reader, "ab" * 32).min_probability)
        """
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "import os\n" + code], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert 0 < float(done.stdout) < 1


def test_halves_are_disjoint_seeded_and_cover_everything():
    a, b = halves(101)
    assert len(a) == 50 and len(b) == 51 and not set(a) & set(b) and set(a) | set(b) == set(range(101))
    assert np.array_equal(halves(101)[0], a)


def test_assess_names_the_reason():
    rng = np.random.default_rng(2)
    thresholds = calibrate_thresholds(_fake_scores(rng, 5000), _fake_scores(rng, 500, shift_detector=3), "test")
    calm = np.zeros(len(SCORES))
    cut = ProbabilityCut(0.5, 0.008, 0.008, "test", "probability_x_digit_shape")
    assert assess(thresholds, cut, calm, 0.9, ink=True) is None
    assert assess(thresholds, cut, calm, 0.9, ink=False) == NO_INK
    assert assess(thresholds, cut, calm, 0.4, ink=True) == "low probability (0.40)"
    noisy = calm.copy()
    noisy[SCORES.index("blobs")] = 100
    noisy[-1] = 100
    assert assess(thresholds, cut, noisy, 0.9, ink=True) == "looks like noise"  # said first: it says most


def test_a_compared_model_of_a_random_split_is_calibrated_on_digits_it_was_not_fitted_on(tmp_path, mnist_full):
    """compare records no cut, so answering calibrated one on the MNIST test set, of whose images a model of a
    random split had been fitted on 293 (--limit 2000), all of them some 8,600: its "not sure" was a leak."""
    from sklearn.model_selection import train_test_split

    from mnistlab import compare, load_mnist, load_split
    from mnistlab.trust.predict import load_predictor

    out = tmp_path / "report"
    compare("logreg", split="random", limit=2000, cv=0, out_dir=out, tracking_uri=str(tmp_path / "s.db"))
    model_dir = out / "models" / "mnist" / "logreg" / "seed-42"
    assert json.loads((model_dir / "model.json").read_text()).get("calibration") is None
    cut = load_predictor(model_dir).cut
    assert cut.method.startswith("the model's own test set (MNIST split at random, seed 42) (10000 digits)")
    # That test set holds none of the images the model was fitted on; the official one held 293 of them.
    bunch = load_mnist("mnist")
    X_train, X_test, y_train, _ = load_split(split="random", seed=42, bunch=bunch)
    fitted = train_test_split(X_train, y_train, train_size=2000, stratify=y_train, random_state=42)[0]
    seen = {row.tobytes() for row in fitted}
    assert not any(row.tobytes() in seen for row in X_test)
    assert sum(row.tobytes() in seen for row in bunch.data[60000:]) == 293
