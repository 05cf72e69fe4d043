"""The reading steps' fast paths give the very numbers of the plain computations they replace.

Each shortcut (OpenCV for scipy.ndimage, a partition for np.percentile, a
lookup table for np.take, table-driven thinning) is checked against the
plain version on random masks and images, edges and corner cases included:
a reading must not change when a step gets faster.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mnistlab.reading.binarise import _otsu
from mnistlab.reading.paper import components, dilated, eroded, select
from mnistlab.reading.sheet import _holes_filled
from mnistlab.reading.steps import _percentile_90, drop_specks
from mnistlab.reading.width import edge_distance, thin


def _masks(seed: int, n: int = 120) -> list[np.ndarray]:
    """Random masks: blobs, noise, full and empty, touching the edges, 1 to 90 pixels a side."""
    rng = np.random.default_rng(seed)
    out = [np.ones((9, 7), bool), np.zeros((8, 11), bool), np.ones((1, 5), bool)]
    for k in range(n):
        shape = tuple(int(s) for s in rng.integers(1, 91, 2))
        noise = rng.random(shape) > rng.uniform(0.1, 0.95)
        out.append(noise if k % 3 == 0 else ndimage.binary_dilation(noise, iterations=int(rng.integers(1, 4))))
    return out


def _zhang_suen(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning written out neighbour by neighbour (the textbook form), for reference."""
    img = np.pad(mask, 1).astype(np.uint8)
    while True:
        changed = False
        for first in (True, False):
            c = img[1:-1, 1:-1]
            p = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],
                 img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]  # fmt: skip
            count = sum(q.astype(np.int8) for q in p)
            rises = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int8) for i in range(8))
            n, e, s, w = p[0], p[2], p[4], p[6]
            side = ((n * e * s == 0) & (e * s * w == 0)) if first else ((n * e * w == 0) & (n * s * w == 0))
            peel = (c == 1) & (count >= 2) & (count <= 6) & (rises == 1) & side
            if peel.any():
                c[peel] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def test_thinning_matches_the_textbook_form():
    for mask in _masks(0):
        np.testing.assert_array_equal(thin(mask), _zhang_suen(mask))


def test_page_morphology_matches_scipy():
    for k, mask in enumerate(_masks(1)):
        steps = 1 + k % 6
        np.testing.assert_array_equal(eroded(mask, steps), ndimage.binary_erosion(mask, iterations=steps))
        np.testing.assert_array_equal(dilated(mask, steps), ndimage.binary_dilation(mask, iterations=steps))
        np.testing.assert_array_equal(_holes_filled(mask), ndimage.binary_fill_holes(mask))


def test_edge_distance_is_scipys():
    rng = np.random.default_rng(2)
    cores = [np.ones((28, 28), bool), np.eye(28, dtype=bool)]
    cores += [ndimage.gaussian_filter(rng.random((28, 28)), rng.uniform(0.5, 2.5)) > 0.5 for _ in range(200)]
    for core in cores:
        if core.any():
            expected = ndimage.distance_transform_edt(core)
            np.testing.assert_array_equal(edge_distance(core), expected)


@pytest.mark.parametrize("n_labels", [5, 256, 257, 3000])
def test_select_is_take(n_labels):
    rng = np.random.default_rng(n_labels)
    labels = rng.integers(0, n_labels, (60, 70)).astype(np.uint16)
    keep = rng.random(n_labels) > 0.5
    np.testing.assert_array_equal(select(labels, keep), np.take(keep, labels))


def test_percentile_90_is_numpys():
    rng = np.random.default_rng(3)
    for n in [*range(1, 400), 1001, 4097, 65_536]:
        values = (rng.random(n) ** 3).astype(np.float32)
        if n % 5 == 0:  # ties
            values = np.round(values * 10).astype(np.float32)
        assert _percentile_90(values) == float(np.percentile(values, 90))


def test_drop_specks_keeps_what_the_plain_rule_keeps():
    """Components under 5% of the largest area, within 3% of the longer side both ways (on a strip, a
    quarter of its shorter side if that is less) and under a quarter of the ink of the largest component
    that is not, or wholly within 3 px of the image's edge, go."""
    single = [np.zeros((120, 200), bool) for _ in range(4)]  # one component each, as most drawings are
    single[0][30:90, 60:66] = True  # a stroke: kept
    single[1][1:3, 20:180] = True  # a sliver along the edge: dropped
    single[2][50:52, 50:52] = True  # a speck: dropped
    single[3][5:9, 5:9] = True  # a speck near the edge: dropped
    tiny = np.zeros((10, 10), bool)
    tiny[0:2, 2:8] = True  # no edge strip in an image this small: kept
    strip = np.zeros((64, 1100), bool)  # a tight crop of 40 digits, each under 3% of the strip's length
    for left in range(30, 1070, 26):
        strip[16:48, left : left + 20] = True
    strip[4:8, 500:504] = True  # and a speck: dropped
    far = np.zeros((240, 320), bool)  # a number photographed from afar: 14 px digits, a small 0 among them
    far[100:114, 100:108] = far[100:114, 120:128] = True  # two digits spanning 14 px (over 3% of 320 px)
    far[103:111, 110:118] = True  # a 0 of 8 x 8 px, with 64 of their 112 pixels: kept
    far[150:153, 200:203] = True  # dust: dropped
    for mask in [*_masks(4, 200), *single, tiny, strip, far]:
        n, labels = components(mask)
        areas = np.bincount(labels.ravel(), minlength=n)[1:]
        boxes = ndimage.find_objects(labels.astype(np.int32))
        h, w = mask.shape
        fair = [
            area >= 0.05 * areas.max() and (min(h, w) <= 12 or (labels[3:-3, 3:-3] == k).any())  # edge strip
            for k, area in enumerate(areas, start=1)
        ]
        reach = min(0.03 * max(mask.shape), 0.25 * min(mask.shape))
        spans = [ok and max(r.stop - r.start, c.stop - c.start) >= reach for ok, (r, c) in zip(fair, boxes)]
        writing = max((a for a, s in zip(areas, spans) if s), default=np.inf)
        keep = [s or (ok and area >= 0.25 * writing) for s, ok, area in zip(spans, fair, areas)]
        expected = np.isin(labels, 1 + np.flatnonzero(keep))
        np.testing.assert_array_equal(drop_specks(mask), expected)
    kept = drop_specks(strip)
    assert components(kept)[0] == 41 and not kept[4:8, 500:504].any()  # the 40 digits and the paper
    kept = drop_specks(far)
    assert kept[103:111, 110:118].all() and not kept[150:153, 200:203].any()


def test_the_answer_png_decodes_to_the_very_pixels_and_bad_shapes_are_refused():
    import io

    from PIL import Image

    from mnistlab.reading.decode import encode_png

    rng = np.random.default_rng(5)
    for shape in ((28, 28), (1, 1), (3, 40), (40, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        with Image.open(io.BytesIO(encode_png(image))) as png:
            png.verify()  # every chunk's CRC checked
        with Image.open(io.BytesIO(encode_png(image))) as png:
            assert png.mode == "L" and np.array_equal(np.asarray(png), image)
    for bad in (np.zeros((0, 5), np.uint8), np.zeros((2, 2, 3), np.uint8)):
        with pytest.raises(ValueError):
            encode_png(bad)


def _plain_otsu(values: np.ndarray) -> float:
    """Otsu's threshold over 256 even bins of the values' range, the bins counted by np.bincount."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return float(np.nextafter(np.float32(lo), np.float32(-np.inf)))
    width = (hi - lo) / 256
    hist = np.bincount(np.minimum(((values - lo) / width).astype(np.intp), 255), minlength=256)
    centres = lo + width * (np.arange(256) + 0.5)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    between = w0 * w1 * (m0 / np.maximum(w0, 1) - (m0[-1] - m0) / np.maximum(w1, 1)) ** 2
    return float(centres[int(np.argmax(between))])


def test_otsu_counts_its_bins_as_bincount_does():
    rng = np.random.default_rng(6)
    for k in range(600):
        values = (rng.random(int(rng.integers(1, 30_000))) ** rng.uniform(0.3, 3.0)).astype(np.float32)
        values *= np.float32(rng.uniform(0.05, 3.0))
        if k % 3 == 0:  # few distinct values, many on the bins' edges
            values = np.round(values * 50).astype(np.float32) / np.float32(50)
        assert _otsu(values) == _plain_otsu(values)
