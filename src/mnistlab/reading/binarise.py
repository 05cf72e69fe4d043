"""Ink told from paper: the paper's grain evened out, then Otsu's threshold with hysteresis.

``remove_grain`` and ``binarise`` are the steps of ``mnistlab.reading.steps``
that decide which pixels are ink; arrays are float32 ink strength (H, W), about
0 on the paper and larger on the ink (``paper.ink_strength``).
"""

from __future__ import annotations

import cv2
import numpy as np

from mnistlab.reading.paper import components, level_and_noise, select

__all__ = ["remove_grain", "binarise"]

# px: the square over which ``remove_grain`` measures the paper around each pixel. Larger than a
# pen's stroke, smaller than the blotches of a photographed sheet that the cubic light surface leaves
# (measured on a first version of the step: 15 and 31 px read fewer hair-pen digits on paper than 21).
_GRAIN = 21
_CELL = 3  # px: ``remove_grain`` averages the paper in cells this wide, seven to its square


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` over 256 even bins of their range."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:  # one value (a clean drawing): everything at it is above the threshold
        return float(np.nextafter(np.float32(lo), np.float32(-np.inf)))
    width = (hi - lo) / 256
    bins = np.minimum((values - lo) / width, 255).astype(np.uint8)  # truncated as floored: no value is below lo
    if bins.size < 2**24:  # OpenCV counts bytes twice as fast as bincount, which widens them (exact float32 counts)
        hist = cv2.calcHist([bins], [0], None, [256], [0, 256]).ravel().astype(np.intp)
    else:
        hist = np.bincount(bins, minlength=256)
    centres = lo + width * (np.arange(256) + 0.5)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def remove_grain(ink: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """``ink`` (float32, H, W) less the paper's own mottling: each pixel's paper level brought to the page's.

    The cubic light surface (``ink_strength``) leaves a photographed sheet's
    blotches, a few dozen pixels across and as strong as a hair-thin line, so
    ``binarise``'s floor over the paper's noise cuts such a line into dots or
    misses it. Each pixel's paper is the mean of the paper (within 2 noise-sigmas
    of the page's level) in the ``_GRAIN`` square around it. Ink is left out of
    its own paper, so a marker's stroke keeps its core; so is anything far
    lighter than the paper (the flat fill around a sheet cut off a table), which
    would lift the paper beside it into ink. Where under a fifth of the square
    is paper (inside a blot of ink) the page's level stands. A clean drawing's
    exact paper comes out unchanged. Returns a new array.

    ``scale``: the image's size against the work size (``decode.WORK_SIDE``), at
    which the square is ``_GRAIN`` px: an image read at twice the size has a
    square twice as wide, the same part of the paper.
    """
    h, w = ink.shape
    cell = max(1, round(_CELL * scale))  # px
    cells = _GRAIN // _CELL  # the square's width in cells
    if min(h, w) < cells * cell:  # smaller than the square: no blotches to even out
        return ink.copy()
    level, sigma = level_and_noise(ink)
    paper = (np.abs(ink - level) < 2 * sigma).astype(np.float32)  # (H, W) 1 on the paper, 0 on the ink
    # The means are taken on thirds: a 7-cell square of 3x3-px cells is the _GRAIN square, at a ninth of
    # the work (an exact 3:1 area reduction; the image's last rows and columns beyond whole cells take the
    # nearest cells' paper). A 21-px box over the whole image cost twice as much as the rest of the step.
    rows, cols = max(1, h // cell), max(1, w // cell)
    whole = (slice(0, rows * cell), slice(0, cols * cell))  # the image in whole cells
    share = cv2.resize(paper[whole], (cols, rows), interpolation=cv2.INTER_AREA)  # (rows, cols)
    total = cv2.resize((ink * paper)[whole], (cols, rows), interpolation=cv2.INTER_AREA)
    window = (cells, cells)
    share = cv2.blur(share, window, borderType=cv2.BORDER_REFLECT)
    total = cv2.blur(total, window, borderType=cv2.BORDER_REFLECT)
    offset = np.where(share > 0.2, total / np.maximum(share, 1e-6), np.float32(level)) - np.float32(level)
    spread = cv2.resize(offset, (cols * cell, rows * cell), interpolation=cv2.INTER_LINEAR)  # (h', w') <= (h, w)
    spread = cv2.copyMakeBorder(spread, 0, h - spread.shape[0], 0, w - spread.shape[1], cv2.BORDER_REPLICATE)
    return np.subtract(ink, spread, dtype=np.float32)


def binarise(
    ink: np.ndarray,
    *,
    min_contrast: float = 0.1,
    paper_noise: tuple[float, float] | None = None,
) -> np.ndarray:
    """Boolean ink mask: Otsu's threshold with hysteresis, never below the paper's noise.

    Ink must rise above a floor (5 noise-sigmas above the paper, and at least
    ``min_contrast``) somewhere: texture and JPEG noise of an empty page stay
    below it. Connected to such ink, fainter stretches of a stroke (a thin pen,
    a lighter digit) count down to 70% of that floor: a hair-thin pen line,
    area-averaged, is barely darker than the paper's noise.

    ``paper_noise``: the paper's level and noise (``level_and_noise`` of the
    whole image) where ``ink`` is a part of it cut out around the ink.
    """
    paper, sigma = level_and_noise(ink) if paper_noise is None else paper_noise
    contrast = max(5 * sigma, min_contrast)  # the floor above the paper
    floor = paper + contrast
    candidates = ink[ink > min(floor / 2, floor)]  # Otsu's values (floor > 0 on any paper), and all above the floor
    if not (candidates.size and candidates.max() > floor):
        return np.zeros(ink.shape, bool)
    values = candidates if floor > 0 else candidates[candidates > floor / 2]
    if not values.size:  # paper far below zero (fine stripes, reduced to one grey): nothing reaches the weak bound
        return np.zeros(ink.shape, bool)
    high = max(_otsu(values), floor)
    low = max(high / 2, paper + 0.7 * contrast)
    n, weak = components(ink > low)
    keep = np.zeros(n, bool)
    keep[weak[ink > high]] = True
    keep[0] = False
    return weak > 0 if keep[1:].all() else select(weak, keep)
