"""Photos, scans and canvas drawings of handwriting -> MNIST-style 28x28 digits.

MNIST digits are white ink on black, anti-aliased grey, the longer side fitted
into a 20x20 box with the aspect ratio kept, and placed in 28x28 so that the
centre of mass sits at the centre. A photo is none of that, which is why "resize
it to 28x28 and flatten" gives near-random answers. ``to_mnist`` runs the steps
below, each a function of its own:

    load_image -> to_grey (decode) -> isolate_page -> ink_strength (paper: decide_polarity and
    remove_background) -> remove_grain -> binarise -> remove_rules (rules) -> drop_specks
    -> clean_ink -> crop_to_ink -> normalize_stroke_width (width) -> fit_to_box -> center_by_mass (geometry)

``remove_grain`` evens out the paper for ``binarise`` alone: the rules are
found, and the strokes' grey measured, in the ink strength as it came. A second
look at a doubted photo (``to_mnist(faint=True)``) binarises the grain-free ink
averaged along its strokes (``faint.along_strokes``) and finds the rules in
the grain-free ink.

A clean drawing (a canvas export, its paper one exact grey: ``flat_paper``) is
first averaged down to about ``_DRAWING_SIDE`` px (``reduce_drawing``), then
binarised and cleaned in its ink's bounding box (the same numbers), with no
search for a sheet where too little is brighter than its paper, and none for
rules, which would cross its edges.
``segment_digits`` runs the same front end on a row of digits, groups the ink
into digits (broken strokes merged) and returns one 28x28 image per digit, left
to right. Working arrays are float32 in [0, 1], shape (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from mnistlab.reading.decode import to_grey
from mnistlab.reading.faint import along_strokes
from mnistlab.reading.geometry import center_by_mass, fit_to_box
from mnistlab.reading.paper import (
    components,
    dilated,
    flat_paper,
    ink_against,
    ink_strength,
    isolate_page,
    level_and_noise,
    sample,
    select,
)
from mnistlab.reading.rules import remove_rules
from mnistlab.reading.width import normalize_stroke_width

__all__ = [
    "reduce_drawing",
    "remove_grain",
    "binarise",
    "drop_specks",
    "clean_ink",
    "crop_to_ink",
    "to_mnist",
    "read_digit",
    "mnist_digit",
    "holds_writing",
]

_HALO = 2  # px around the mask whose grey edges belong to the strokes (``clean_ink``)
_FIVE = np.ones((2 * _HALO + 1,) * 2, np.uint8)  # the halo's dilation: two 8-connected steps in one
_EDGE = 3  # px: ink wholly this close to the image's edge is no writing (``drop_specks``)
# px: the square over which ``remove_grain`` measures the paper around each pixel. Larger than a
# pen's stroke, smaller than the blotches of a photographed sheet that the cubic light surface leaves
# (measured on a first version of the step: 15 and 31 px read fewer hair-pen digits on paper than 21).
_GRAIN = 21
_CELL = 3  # px: ``remove_grain`` averages the paper in cells this wide, seven to its square
# A digit's ink spans at least this share of the image's longer side (19 px of a 320 px photo): less is a
# speck (dust, a pen's dot, a grid line's stub), which blown up to MNIST's 20 px box reads as a 1 or a 4. On
# dev seeds digits spanned 0.23 and more, where their ink was found at all; the empty pages answered, 0.03-0.04.
_MIN_DIGIT = 0.06
# px: a clean drawing (a canvas export) is averaged down to about this shorter side before it is read. MNIST's
# 20 px box needs far less: 300 blown-up MNIST test digits and 540 canvases of other hands (dev seed 12) read
# right, flagged and confidently wrong as often as at 280 px, and a 280 px canvas took 30% less CPU.
_DRAWING_SIDE = 140


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


def remove_grain(ink: np.ndarray) -> np.ndarray:
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
    """
    h, w = ink.shape
    if min(h, w) < _GRAIN:  # smaller than the square: no blotches to even out
        return ink.copy()
    level, sigma = level_and_noise(ink)
    paper = (np.abs(ink - level) < 2 * sigma).astype(np.float32)  # (H, W) 1 on the paper, 0 on the ink
    # The means are taken on thirds: a 7-cell square of 3x3-px cells is the _GRAIN square, at a ninth of
    # the work (an exact 3:1 area reduction; the image's last rows and columns beyond whole cells take the
    # nearest cells' paper). A 21-px box over the whole image cost twice as much as the rest of the step.
    rows, cols = max(1, h // _CELL), max(1, w // _CELL)
    whole = (slice(0, rows * _CELL), slice(0, cols * _CELL))  # the image in whole cells
    share = cv2.resize(paper[whole], (cols, rows), interpolation=cv2.INTER_AREA)  # (rows, cols)
    total = cv2.resize((ink * paper)[whole], (cols, rows), interpolation=cv2.INTER_AREA)
    window = (_GRAIN // _CELL, _GRAIN // _CELL)
    share = cv2.blur(share, window, borderType=cv2.BORDER_REFLECT)
    total = cv2.blur(total, window, borderType=cv2.BORDER_REFLECT)
    offset = np.where(share > 0.2, total / np.maximum(share, 1e-6), np.float32(level)) - np.float32(level)
    spread = cv2.resize(offset, (cols * _CELL, rows * _CELL), interpolation=cv2.INTER_LINEAR)  # (h', w') <= (h, w)
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
    high = max(_otsu(candidates if floor > 0 else candidates[candidates > floor / 2]), floor)
    low = max(high / 2, paper + 0.7 * contrast)
    n, weak = components(ink > low)
    keep = np.zeros(n, bool)
    keep[weak[ink > high]] = True
    keep[0] = False
    return weak > 0 if keep[1:].all() else select(weak, keep)


def drop_specks(mask: np.ndarray, *, min_fraction: float = 0.05, min_extent: float = 0.03) -> np.ndarray:
    """Remove connected components smaller than ``min_fraction`` of the largest
    one's area, or whose height and width are both under ``min_extent`` of the
    image's longer side (dust and pen dots on an otherwise empty page), or that
    lie wholly within ``_EDGE`` px of the image's edge (a sliver of a rule or of
    the page's edge that the frame cut off: no writing is that thin)."""
    mask = np.asarray(mask, bool)  # it also selects the labels below
    n, labels = components(mask)
    if n == 1:
        return mask.copy()
    if n == 2:  # one stroke (most drawings): its area and reach without counting labels
        areas = np.array([np.count_nonzero(mask)])
        keep = np.array([min(mask.shape) <= 4 * _EDGE or bool(mask[_EDGE:-_EDGE, _EDGE:-_EDGE].any())])
    else:
        areas = np.bincount(labels[mask], minlength=n)[1:]  # the ink's labels alone: a tenth of the pixels
        keep = areas >= min_fraction * areas.max()
        if min(mask.shape) > 4 * _EDGE:
            inner = labels[_EDGE:-_EDGE, _EDGE:-_EDGE]
            keep &= np.bincount(inner[inner > 0], minlength=n)[1:] > 0  # components reaching inside the edge strip
    extent = min_extent * max(mask.shape)
    # A component of more than (ceil(extent) - 1)^2 pixels spans at least ``extent`` one way:
    # only smaller ones need their bounding boxes (none, most of the time).
    small = keep & (areas <= (np.ceil(extent) - 1) ** 2)
    if small.any():
        boxes = ndimage.find_objects(labels)
        for k in np.flatnonzero(small):  # few: the specks already failed on area
            rows, cols = boxes[k]
            keep[k] = max(rows.stop - rows.start, cols.stop - cols.start) >= extent
    if keep.all():  # a clean drawing: nothing to drop, no lookup
        return mask.copy()
    return select(labels, np.concatenate([[False], keep]))


def clean_ink(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey ink in [0, 1]: stroke cores at 1, anti-aliased edges kept, zero beyond 2 px of the mask."""
    out = np.zeros(ink.shape, np.float32)
    box = _box(mask, _HALO)
    if box is not None:
        out[box] = _clean_ink_in(ink, mask, box)
    return out


def holds_writing(mask: np.ndarray) -> bool:
    """Whether ``mask`` (H, W) holds ink that can be writing: ink that spans at least ``_MIN_DIGIT`` of the
    image's longer side, one way or the other (less is a speck: dust, a pen's dot, a grid line's stub)."""
    core = _box(mask)
    return core is not None and _spans_a_digit(core, mask.shape)


def _spans_a_digit(core: tuple[slice, slice], shape: tuple[int, ...]) -> bool:
    return max(s.stop - s.start for s in core) >= _MIN_DIGIT * max(shape)


def _box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """The bounding box of ``mask`` grown by ``margin`` px within the image (None: no ink)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return _grown((slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)), margin, mask.shape)


def _grown(box: tuple[slice, slice], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """``box`` grown by ``margin`` px on every side, within an image of ``shape``."""
    (rows, cols), (h, w) = box, shape
    return (
        slice(max(rows.start - margin, 0), min(rows.stop + margin, h)),
        slice(max(cols.start - margin, 0), min(cols.stop + margin, w)),
    )


def _clean_ink_in(ink: np.ndarray, mask: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """``clean_ink(ink, mask)[box]`` (``box``: ``_box(mask, _HALO)``, beyond which it is all zero), computed
    in the box alone; the paper's level and noise are still those of the whole image."""
    some, inked = sample(ink), sample(mask)  # the paper's level and noise need no more
    paper = some[~inked]
    level, noise = level_and_noise(paper) if paper.size else (0.0, 0.0)
    base = level + 2 * noise
    part, part_mask = ink[box], mask[box]
    core = _percentile_90(part[part_mask])
    # (h, w) float32, in place: one array for all the steps (on a clean drawing's exact paper, base is 0).
    scale = np.float32(1 / max(core - base, 1e-3))
    if base:
        grey = part - base
        grey *= scale
    else:
        grey = part * scale
    np.clip(grey, 0.0, 1.0, out=grey)
    return _near_strokes(grey, part_mask)


def _percentile_90(values: np.ndarray) -> float:
    """``np.percentile(values, 90)`` of 1-d float32 ``values`` (linear interpolation, its very
    arithmetic), without its overhead: numpy's vectorised sort finds the two values around the
    90th percentile in a fraction of the time of a two-point partition (measured, 3,000 to 50,000 values)."""
    index = (values.size - 1) * 0.9
    k = int(index)
    if k + 1 >= values.size:
        return float(values.max())
    ordered = np.sort(values)
    low, high = ordered[k], ordered[k + 1]
    t = index - k  # a Python float: the arithmetic below stays float32, as numpy's does
    return float(high - (high - low) * (1 - t)) if t >= 0.5 else float(low + (high - low) * t)


def crop_to_ink(ink: np.ndarray, level: float = 0.05) -> np.ndarray:
    """The bounding box of the pixels above ``level`` cut out of ``ink`` (faint
    anti-aliased edges included, as MNIST's box is); (0, 0) when there is no ink."""
    box = _box(ink > level)
    return np.zeros((0, 0), np.float32) if box is None else ink[box]


def ink_and_mask(image, *, faint: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """The front end shared by single digits and numbers: grey ink in [0, 1], its boolean mask, and whether
    the image is a clean drawing (``faint``: a photo's second look, as ``to_mnist`` takes it).

    A clean drawing (``flat_paper``) has no rules to remove: a rule runs
    through the image's edges, and a clean drawing's edges are all paper.
    """
    ink, mask, flat = _ink_and_raw_mask(image, faint)
    return clean_ink(ink, mask), mask, flat


def _ink_and_raw_mask(image, faint: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """``ink_and_mask`` before ``clean_ink``: the ink strength as it came from the paper (``faint``: a photo's
    second look, ``_faint_mask``; a clean drawing has no noise to look below), and whether
    the image is a clean drawing."""
    ink, flat = _page_ink(to_grey(image))
    if flat:
        mask = _clean_drawing_mask(ink)
    elif faint:
        mask = _faint_mask(ink)
    else:
        mask = _first_look_mask(ink, remove_grain(ink))
    return ink, drop_specks(mask), flat


def _first_look_mask(ink: np.ndarray, grain_free: np.ndarray) -> np.ndarray:
    """A photo's mask at the first look: ``grain_free`` (``remove_grain(ink)``) binarised, rules found in ``ink``."""
    return remove_rules(binarise(grain_free), ink)


def _faint_mask(ink: np.ndarray) -> np.ndarray:
    """The mask of a second look at a doubted photo (``mnistlab.reading.faint`` says why): the grain-free
    ink averaged along its strokes and binarised, rules found in the grain-free ink; on ruled or squared
    paper, the first look's mask unless half of this one lies within 3 px of it."""
    grain_free = remove_grain(ink)
    raw = binarise(along_strokes(grain_free))
    faint = remove_rules(raw, ink, lines_in=grain_free)
    if np.array_equal(faint, raw):  # no rules: plain paper
        return faint
    first = drop_specks(_first_look_mask(ink, grain_free))
    near = np.count_nonzero(faint & dilated(first, 3))
    return faint if near >= 0.5 * np.count_nonzero(faint) else first


def _clean_drawing_mask(ink: np.ndarray) -> np.ndarray:
    """``binarise(ink)`` of a clean drawing (``flat_paper``), binarised in the ink's bounding box alone.

    Its paper is exactly 0 ink and most of the image, every other pixel above
    it: the paper's level and noise are 0, and nothing beyond the box is ink.
    """
    mask = np.zeros(ink.shape, bool)
    box = _box(ink > 0)
    if box is not None:
        mask[box] = binarise(ink[box], paper_noise=(0.0, 0.0))
    return mask


def _page_ink(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """``ink_strength(isolate_page(grey))``, and whether that page is a clean drawing (``flat_paper``: its ink
    then at its work size, ``reduce_drawing``); ``grey`` (``to_grey``'s own array) may be overwritten.

    The paper's flatness is measured once for both steps (``ink_strength`` looks
    again on a photo, where the first edge already says no).
    """
    flat = flat_paper(grey)
    page = isolate_page(grey, None if flat is None else flat[0])
    if page is not grey:  # a sheet cut out: its paper is measured anew
        grey, flat = page, flat_paper(page)
    if flat is None:
        return ink_strength(grey), False
    level, dark = flat
    return reduce_drawing(ink_against(grey, np.float32(level), dark, out=grey)), True


def reduce_drawing(ink: np.ndarray) -> np.ndarray:
    """A clean drawing's ink (paper exactly 0) averaged over k x k blocks, k the whole number of times
    ``_DRAWING_SIDE`` fits in its shorter side (unchanged below 2): a 280 px canvas export is read at 140 px.
    A row of digits, wide and short, keeps its size. The paper stays exactly 0."""
    h, w = ink.shape
    k = min(h, w) // _DRAWING_SIDE
    if k < 2:
        return ink
    if h % k or w % k:  # paper added to whole blocks
        ink = cv2.copyMakeBorder(ink, 0, -h % k, 0, -w % k, cv2.BORDER_CONSTANT, value=0)
    return cv2.resize(ink, (ink.shape[1] // k, ink.shape[0] // k), interpolation=cv2.INTER_AREA)


def digit_from(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (28, 28) uint8 MNIST image of the ink under ``mask`` (one digit's part of the whole mask)."""
    return mnist_digit(_near_strokes(ink, mask))


def mnist_digit(ink: np.ndarray) -> np.ndarray:
    """The (28, 28) uint8 MNIST image of all of ``ink`` (H, W) in [0, 1]: MNIST's stroke width and geometry."""
    return center_by_mass(fit_to_box(normalize_stroke_width(crop_to_ink(ink))))


def _near_strokes(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``ink`` (float32, H, W) kept within 2 px of ``mask`` (8-connected: the grey edges that belong to
    the strokes), zero beyond: a new array, as ``ink * halo`` but in one masked copy."""
    return cv2.copyTo(ink, dilated(mask, kernel=_FIVE).view(np.uint8))


def to_mnist(image, *, faint: bool = False) -> np.ndarray:
    """Any image of one handwritten digit -> (28, 28) uint8, white ink on black, MNIST-style.

    ``image``: a path, bytes, file object, PIL image, or an array (H, W), (H, W, 3)
    or (H, W, 4). An image without ink (an empty page), or with only a speck of
    it (under ``_MIN_DIGIT`` of its longer side), gives all zeros.
    ``faint``: a second look at a photo whose first reading was doubted, its ink
    averaged along its strokes before it is binarised, and faint rules looked
    for where the paper's grain hid them (``_faint_mask``): a hair-thin or
    light stroke that came out in pieces may come out whole. A clean drawing
    comes out as without it.
    """
    return read_digit(image, faint=faint)[0]


def read_digit(image, *, faint: bool = False) -> tuple[np.ndarray, bool]:
    """``to_mnist(image, faint=faint)``, and whether ``image`` is a clean drawing (``flat_paper``): a
    doubted drawing's second look would read the very same image, so it needs none."""
    ink, mask, flat = _ink_and_raw_mask(image, faint)
    core = _box(mask)
    if core is None or not _spans_a_digit(core, mask.shape):
        return np.zeros((28, 28), np.uint8), flat  # no ink, or only a speck: no digit
    box = _grown(core, _HALO, mask.shape)
    return mnist_digit(_clean_ink_in(ink, mask, box)), flat  # clean_ink's ink, all of it: zero beyond the box
