"""The reader's training side: what the detector sees (silhouettes), and what the nets learn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mnistlab.reading.steps import mnist_digit
from mnistlab.reading.width import thin
from mnistlab.trust.detector import training_set
from mnistlab.trust.drawings import FONT_PACKAGES, HANDWRITING_FONTS, doodle, flag_ones, font_paths, glyphs, restroked
from mnistlab.trust.reader import load_reader
from mnistlab.trust.scores import silhouette
from mnistlab.trust.thresholds import flags


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


def test_silhouette_blurs_as_scipy_did_bit_for_bit(mnist_full):
    # The shipped detector was trained on silhouettes blurred by scipy's gaussian_filter; the reading path
    # blurs without scipy (to start faster), and its nets must see the very same images.
    digits = np.asarray(mnist_full.images[:3000])
    rng = np.random.default_rng(0)
    noise = (rng.random((300, 28, 28)) < rng.random((300, 1, 1))) * rng.integers(1, 256, (300, 1, 1))
    for images in (digits, noise.astype(np.uint8), np.full((1, 28, 28), 255, np.uint8)):
        x = images.astype(np.float32)
        mask = (x > 0.4 * np.maximum(x.max(axis=(1, 2), keepdims=True), 1)).astype(np.float32)
        scipys = np.round(ndimage.gaussian_filter(mask, (0, 0.8, 0.8)) * 255).astype(np.uint8)
        np.testing.assert_array_equal(silhouette(images), scipys)


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
    assert (y == 10).sum() >= 750  # letters, pairs of digits, strokes, doodles, noise
    # Everything is placed as to_mnist places a digit: ink inside the 20x20 box, centred by mass.
    for img in images[2000::97]:
        rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20
        cy, cx = ndimage.center_of_mass(img.astype(float))
        assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5
    again = training_set(
        np.asarray(mnist_full.images[:2000]),
        np.asarray(mnist_full.target[:2000]),
        seed=3,
        stride=1,
        copies=1,
        n_strokes=300,
    )
    assert np.array_equal(again[0], images) and np.array_equal(again[1], y)


def test_restroked_digits_are_mnist_digits_in_a_marker_or_a_hair_thin_pen_read_back(mnist_full):
    digits = np.asarray(mnist_full.images[:40])
    out = restroked(digits, np.random.default_rng(0))
    assert out.shape == digits.shape and out.dtype == np.uint8
    widths = np.array([(img > 127).sum() / thin(img > 127).sum() for img in out])  # ink per px of middle line
    # MNIST's own: 1.3 to 4.6 px. Swollen by a marker, or redrawn by reading at MNIST's 2.6 px.
    marker, hair = widths >= 4.5, (widths >= 2.0) & (widths <= 2.9)
    assert marker.sum() >= 10 and hair.sum() >= 10
    for img, digit in zip(out, digits):  # the same digit, placed as to_mnist places one
        cy, cx = ndimage.center_of_mass(img.astype(float))
        assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5
        assert ((img > 64) & (digit > 64)).sum() >= 0.5 * min((img > 64).sum(), (digit > 64).sum())
    assert restroked(digits[:0], np.random.default_rng(0)).shape == (0, 28, 28)


def test_a_training_set_with_restroked_digits_labels_them_as_their_digits(mnist_full):
    digits, labels = np.asarray(mnist_full.images[:500]), np.asarray(mnist_full.target[:500])
    plain = training_set(digits, labels, seed=3, copies=1, n_strokes=50)
    more = training_set(digits, labels, seed=3, copies=1, n_strokes=50, n_restroked=100)
    assert len(more[1]) == len(plain[1]) + 100
    assert np.array_equal(more[1][500:600], more[1][500:600].clip(0, 9))  # digits, not "not a digit"
    assert np.bincount(more[1], minlength=11)[10] == np.bincount(plain[1], minlength=11)[10]


def test_fonts_without_a_glyph_draw_nothing_instead_of_a_box():
    chars = "0123456789"
    images, which = glyphs(chars, np.random.default_rng(0), copies=1)
    assert len(images) <= len(font_paths()) * len(chars)
    # A missing glyph is drawn by many fonts as an empty box: none of those may pass as a digit.
    boxes = [img for img in images if (img[4:24, 4:24] > 0).mean() > 0.6 and img[13:15, 13:15].max() == 0]
    assert not boxes


def test_training_uses_handwriting_fonts_that_the_test_sets_do_not():
    from mnistlab.testing.fonts import FONTS

    installed = [f for f in HANDWRITING_FONTS if Path(f).is_file()]
    if not installed:
        pytest.skip(f"Debian's {FONT_PACKAGES} are not installed")
    assert {str(p) for p in font_paths()} >= set(installed)
    assert not set(HANDWRITING_FONTS) & set(FONTS.values())  # no hand is both taught and tested
    assert not {Path(f).parent for f in HANDWRITING_FONTS} & {Path(f).parent for f in FONTS.values()}


def upright_one() -> np.ndarray:
    """A plain 1 (28, 28): an upright bar 3 px wide and 20 px tall in the middle, as MNIST places one."""
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 13:16] = 255
    return img


def test_a_flagged_one_gets_its_flag_up_left_of_the_stem_and_keeps_mnist_geometry():
    for seed in range(5):
        (out,) = flag_ones(upright_one()[None], np.random.default_rng(seed))
        assert out.dtype == np.uint8
        ink = out > 64
        stem = np.flatnonzero(ink[15:19].any(axis=0))  # its columns below the flag, above the foot
        top = np.flatnonzero(ink[:12].any(axis=0))
        assert top[0] <= stem[0] - 3 and top[-1] <= stem[-1] + 1  # a flag to the left of the top alone
        cy, cx = ndimage.center_of_mass(out.astype(float))
        assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5


def test_flag_ones_leaves_out_a_one_leaning_like_a_seven_and_flags_mnists_ones(mnist_full):
    flat = np.zeros((28, 28), np.uint8)
    for row in range(8, 20):  # rising 12 px over 20: a stroke 31 degrees over the horizontal
        flat[row, 24 - round((row - 8) * 20 / 12) - 1 : 24 - round((row - 8) * 20 / 12) + 2] = 255
    assert flag_ones(flat[None], np.random.default_rng(0)).shape == (0, 28, 28)
    images, labels = np.asarray(mnist_full.images[:2000]), np.asarray(mnist_full.target[:2000])
    ones = images[labels == 1][:30]
    out = flag_ones(ones, np.random.default_rng(1))
    assert out.shape == ones.shape  # MNIST's 1s lean less than 45 degrees: each gets a flag
    more = np.array([(new > 64).sum() - (old > 64).sum() for new, old in zip(out, ones)])  # px of ink added
    assert (more > 0).mean() >= 0.8 and more.mean() >= 10  # (a wide flag shrinks the rest to fit the box)


def test_doodles_are_drawn_inside_the_canvas_and_the_same_for_a_seed():
    drawn = [doodle(np.random.default_rng(seed)) for seed in range(60)]
    assert all(d.shape == (64, 64) and d.dtype == np.float32 for d in drawn)
    assert all(d.sum() > 60 and d.max() == 1.0 for d in drawn)  # a pen's line of some length
    assert np.mean([d[[0, -1]].any() or d[:, [0, -1]].any() for d in drawn]) < 0.2  # few cut at the edge
    assert np.array_equal(doodle(np.random.default_rng(7)), drawn[7])
    assert len({d.tobytes() for d in drawn}) == 60


def test_the_shipped_detector_flags_doodles_of_a_seed_it_never_saw():
    # It trained on seed 0's doodles (and calibrated on seed 1's): these are new ones of the same kinds.
    reader = load_reader()
    images = np.stack([mnist_digit(doodle(np.random.default_rng(1000 + k))) for k in range(200)])
    assert flags(reader.scores(images), reader.thresholds.lower, reader.thresholds.upper).mean() >= 0.9
