"""The digit / not-a-digit detector: its inputs, its training set and its cache."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mnistlab._digit_detector import digit_detector, non_digit_probability, silhouette, training_set


def test_silhouette_ignores_grey_levels_but_keeps_the_shape(mnist_full):
    digits = np.asarray(mnist_full.images[:50])
    faint = (digits.astype(np.float32) * 0.5).astype(np.uint8)  # the same digits in grey ink
    same = np.abs(silhouette(digits).astype(int) - silhouette(faint)) <= 2
    assert same.mean() > 0.995  # equal but for pixels right at the 40% threshold
    out = silhouette(digits)
    assert out.shape == (50, 28, 28) and out.dtype == np.uint8
    # Same ink, same place: the silhouette covers the strokes and little else.
    inked, covered = digits > 127, out > 127
    assert (inked & covered).sum() / inked.sum() > 0.9
    assert not silhouette(np.zeros((1, 28, 28), np.uint8)).any()


@pytest.fixture(scope="module")
def small_set(mnist_full):
    digits, labels = np.asarray(mnist_full.images[:2000]), np.asarray(mnist_full.target[:2000])
    return training_set(digits, labels, seed=3, stride=1, copies=1, n_strokes=300)


def test_training_set_has_digits_printed_digits_and_non_digits(small_set, mnist_full):
    images, y = small_set
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28) and len(images) == len(y)
    assert set(np.unique(y)) == set(range(11))  # 0-9, and 10 = not a digit
    n_printed = (y[2000:] < 10).sum()
    assert n_printed >= 10 * 10  # every digit in at least 10 fonts
    assert (y == 10).sum() >= 600  # letters, pairs of digits, strokes, noise
    # Everything is placed as to_mnist places a digit: ink inside the 20x20 box, centred by mass.
    for img in images[2000::97]:
        rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20
        cy, cx = ndimage.center_of_mass(img.astype(float))
        assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5
    again = training_set(np.asarray(mnist_full.images[:2000]), np.asarray(mnist_full.target[:2000]), seed=3,
                         stride=1, copies=1, n_strokes=300)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], y)


def test_detector_is_cached_and_tells_letters_from_digits(mnist_full):
    from PIL import Image, ImageDraw, ImageFont

    from mnistlab import to_mnist

    from mnistlab import _digit_detector

    detector = digit_detector()
    assert digit_detector() is detector  # fitted once per process
    _digit_detector._DETECTORS.clear()
    reloaded = digit_detector()  # from the safetensors file in the user cache
    assert reloaded is not detector
    # Letters in Pillow's own font, which the detector never saw (it learnt matplotlib's fonts).
    letters = []
    for char in "KMNWX#@":
        im = Image.new("L", (120, 120), 255)
        ImageDraw.Draw(im).text((25, 15), char, fill=0, font=ImageFont.load_default(size=80))
        letters.append(to_mnist(np.asarray(im)))
    test = np.asarray(mnist_full.images[60000:61000])
    p_letters, p_digits = non_digit_probability(detector, np.stack(letters)), non_digit_probability(detector, test)
    assert np.median(p_letters) > 0.9 and np.median(p_digits) < 0.05
    assert (p_digits > 0.5).mean() < 0.02
    assert np.array_equal(non_digit_probability(reloaded, test), p_digits)


def _fake_scores(rng, n, shift_detector=0.0, shift_fixed=0.0):
    """(n, 6) scores: five fixed ones and the detector's (last), all larger for non-digits."""
    s = rng.normal(size=(n, 6))
    s[:, 5] += shift_detector
    s[:, :5] += shift_fixed
    return s


@pytest.mark.parametrize("who, lo, hi", [("detector", 0.7, 1.0), ("fixed", 0.0, 0.3)])
def test_calibration_gives_the_budget_to_the_score_that_catches_non_digits(who, lo, hi):
    from mnistlab._calibration import SCORES, calibrate

    assert SCORES[-1] == "not_a_digit"
    rng = np.random.default_rng(0)
    digits, held_out = _fake_scores(rng, 5000), _fake_scores(rng, 5000)
    others = _fake_scores(rng, 2000, **({"shift_detector": 3.0} if who == "detector" else {"shift_fixed": 3.0}))
    proba = rng.dirichlet(np.full(10, 0.1), 5000)
    cal = calibrate(digits, proba, held_out, proba, "test", others)
    assert lo <= cal.detector_share <= hi
    # Whatever the share, the digits flagged stay at the budget, on both halves.
    assert 0.0075 <= cal.flag_rate_calibration <= 0.0085
    assert 0.004 <= cal.flag_rate_evaluation <= 0.016
