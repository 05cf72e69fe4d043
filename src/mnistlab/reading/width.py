"""Make any pen's strokes MNIST's width: a hair-thin line and a felt pen's blot become MNIST-like strokes.

MNIST's digits were written with similar pens and scanned alike: in the 20 px
box their strokes are about 2.6 px wide (half-width ~0.065 of the box). A
fountain pen's hair line or a felt marker's blot is far outside that, and
both a classifier and the "not digit-shaped" scores trip on it.
``normalize_stroke_width`` measures a digit's strokes (``stroke_half_width``,
along their middle lines) and redraws those far off MNIST's.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

__all__ = ["edge_distance", "stroke_half_width", "thin", "normalize_stroke_width", "MNIST_HALF_WIDTH"]

MNIST_HALF_WIDTH = 0.065  # stroke half-width / longer side of the digit, as in MNIST's 20 px box
_WORK = 64  # longer side (px) at which strokes are measured and redrawn
_EIGHT = np.ones((3, 3), bool)


def edge_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float64: each pixel's Euclidean distance to the nearest pixel outside ``mask`` (0 outside it).

    OpenCV's exact transform, made repeatable: its float32 results can differ in
    the last bit from one call to the next on the same mask (seen in one process
    of many calls), enough to flip a comparison of two equal distances.
    Squared and rounded back to the whole squared distances they are, their
    roots are exact (``scipy.ndimage.distance_transform_edt``'s values). Without
    a single pixel outside the mask, the distances are scipy's too: to the
    point just above the top left corner.
    """
    if mask.all():
        rows, cols = np.indices(mask.shape, dtype=np.float64)
        return np.sqrt((rows + 1) ** 2 + cols**2)
    dist = cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.sqrt(np.round(dist.astype(np.float64) ** 2))


def stroke_half_width(mask: np.ndarray) -> float:
    """Median half-width (px) of the strokes: the distance to the edge along their middle line."""
    dist = edge_distance(mask)
    ridge = mask & (dist >= cv2.dilate(dist, _EIGHT.view(np.uint8)))
    return _median(dist[ridge]) if ridge.any() else 0.0


def _median(values: np.ndarray) -> float:
    """``np.median`` of 1-d ``values`` (the mean of the two middle ones for an even count, in their dtype),
    without its overhead: a few hundred values here, where the wrapper cost more than the sort."""
    ordered = np.sort(values)
    return float((ordered[(ordered.size - 1) // 2] + ordered[ordered.size // 2]) / 2)


def _framed(mask: np.ndarray, width: int) -> np.ndarray:
    """``np.pad(mask, width)`` of a boolean mask, by OpenCV (a tenth of numpy's cost on these sizes)."""
    out = cv2.copyMakeBorder(mask.view(np.uint8), width, width, width, width, cv2.BORDER_CONSTANT, value=0)
    return out.view(bool)


def _peel_tables() -> np.ndarray:
    """(2, 256) uint8: 1 where Zhang-Suen's first (second) pass peels an ink pixel with that neighbourhood.

    A neighbourhood's code has bit i set when neighbour i is ink: N, NE, E, SE, S, SW, W, NW.
    """
    tables = np.zeros((2, 256), np.uint8)
    for code in range(256):
        p = [(code >> i) & 1 for i in range(8)]
        rises = sum(p[i] == 0 and p[(i + 1) % 8] == 1 for i in range(8))  # 0 -> 1 steps going round
        n, e, s, w = p[0], p[2], p[4], p[6]
        shape = 2 <= sum(p) <= 6 and rises == 1  # neither a stroke's end nor a bridge between its sides
        tables[0, code] = shape and n * e * s == 0 and e * s * w == 0  # south-east border pixels
        tables[1, code] = shape and n * e * w == 0 and n * s * w == 0  # north-west ones
    return tables


_PEEL = _peel_tables()
# The neighbours' weights about the centre (N = 1, clockwise to NW = 128): a correlation with it gives the code.
_CODE = np.array([[128, 1, 2], [64, 0, 4], [32, 16, 8]], np.float32)


def thin(mask: np.ndarray) -> np.ndarray:
    """The middle lines of the strokes, one pixel wide and connected as the strokes are (Zhang-Suen thinning).

    Each pass peels the border pixels whose removal neither breaks a stroke
    nor shortens its end, first from the south-east, then from the north-west,
    until nothing changes; each pass decides for the whole image at once, from
    every pixel's neighbourhood code (nothing beyond the edge) and a table.
    """
    img = mask.astype(np.uint8)
    while True:
        changed = False
        for table in _PEEL:
            code = cv2.filter2D(img, cv2.CV_8U, _CODE, borderType=cv2.BORDER_CONSTANT)  # exact: sums of at most 255
            peel = np.bitwise_and(cv2.LUT(code, table), img)
            if peel.any():
                img ^= peel
                changed = True
        if not changed:
            return img.astype(bool)


def _stroke_height(work: np.ndarray) -> float:
    """The ink along a stroke's middle in ``work`` (h, w): the median of the local peaks (3x3) over the inked
    pixels, at most the brightest pixel. Area-averaged, a hair line is a fraction of a pixel's ink and twice
    that where two strokes cross or the pen turns back: half of the brightest pixel cuts the line into dots."""
    peak = float(work.max())
    local = cv2.dilate(work, _EIGHT.view(np.uint8))  # (h, w): the brightest ink within one pixel
    return min(peak, _median(local[work > 0.25 * peak]))


def normalize_stroke_width(ink: np.ndarray, *, low: float = 0.4, high: float = 2.0) -> np.ndarray:
    """A cropped digit's ink (H, W) in [0, 1], redrawn with MNIST's stroke width if its own is far off.

    Strokes within ``low``..``high`` times MNIST's width are left as they are
    (99% of MNIST's own digits are), except in a digit that is a single bar
    narrower than MNIST's stroke. Thinner ones (a hair-thin pen) are thinned
    to their middle lines (``thin``) and drawn again with a round pen of MNIST's
    width, or thinner where that would fill a loop (``_loops_kept_open``).
    Wider ones (a marker, a blown-up low-resolution scan, a filled shape)
    keep their outline, which a middle line would lose (a wedge-shaped "1" thins
    to a "Y"), and get MNIST's soft edge: the ink fades from the stroke's
    middle to its edge over half the stroke's half-width.
    """
    h, w = ink.shape
    if min(h, w) == 0:
        return ink
    scale = _WORK / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Area-averaged, then cut at half the strokes' height: a hair line 4x thinner than a pixel here still stays a line.
    work = np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
    # A blank pixel around: the crop's border is the ink's edge (OpenCV measures no distance to it).
    mask = _framed(work > 0.5 * _stroke_height(work), 1)
    target = MNIST_HALF_WIDTH * _WORK
    half = stroke_half_width(mask)
    # A digit narrower than MNIST's stroke is one bar (a "1" drawn straight): redrawn at MNIST's width even within
    # the tolerance, or ``fit_to_box`` rounds a 1.4 px bar to 1 px, under the ink MNIST's 1s have ("not digit-shaped").
    bar = size[0] < 2 * target
    if half == 0.0 or (low * target <= half <= high * target and not bar):
        return ink
    if half > high * target:  # (h', w') at the working size
        return np.clip(edge_distance(mask)[1:-1, 1:-1] / (0.5 * half), 0.0, 1.0).astype(np.float32)
    pad = int(np.ceil(target)) + 1
    middle = thin(_framed(mask, pad))
    to_middle = edge_distance(~middle)
    pen = _loops_kept_open(middle, to_middle, target)
    redrawn = np.clip(pen + 0.5 - to_middle, 0.0, 1.0).astype(np.float32)  # a round pen, anti-aliased edge
    rows, cols = np.flatnonzero(redrawn.any(axis=1)), np.flatnonzero(redrawn.any(axis=0))
    return redrawn[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


_LOOP = 1.5  # px at the working size: a hole in the middle lines this far across from them at least is a loop
_THINNEST = 0.5  # of MNIST's half-width: the thinnest pen a loop is kept open with


def _loops_kept_open(middle: np.ndarray, to_middle: np.ndarray, target: float) -> float:
    """The pen's half-width (px) to redraw the middle lines ``middle`` with: ``target``, or less where a loop
    (a hole in the middle lines, ``_LOOP`` px or more from them inside) would be filled by it, down to
    ``_THINNEST`` of it. ``to_middle``: each pixel's distance to the middle lines.

    A hair-thin pen's small loop (the top of a slanted "8" in a handwriting
    font) stays open; at MNIST's width it was filled, and the "8" read as a
    confident "0". Smaller holes are where the middle lines cross themselves.
    """
    n, labels = cv2.connectedComponents((~middle).view(np.uint8), connectivity=4)
    if n <= 2:  # the paper around the digit alone: no loop
        return target
    inside = np.zeros(n, bool)
    inside[1:] = True
    inside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False  # reaching the edge
    holes = np.flatnonzero(inside)
    farthest = np.full(n, -np.inf)
    np.maximum.at(farthest, np.asarray(labels, np.intp), to_middle)  # each hole's farthest pixel from the lines
    radius = farthest[holes]
    loops = radius[radius >= _LOOP]
    if loops.size == 0:
        return target
    return max(_THINNEST * target, min(target, float(loops.min()) - 1.0))
