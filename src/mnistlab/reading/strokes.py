"""Make any pen look like MNIST's: rules of lined and squared paper removed, stroke width normalised.

MNIST's digits were written with similar pens and scanned alike: in the 20 px
box their strokes are about 2.6 px wide (half-width ~0.065 of the box). A
fountain pen's hair line or a felt marker's blot is far outside that, and
both a classifier and the "not digit-shaped" scores trip on it. Paper lines
are not ink of the digit at all. Both steps work on the boolean ink mask.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.reading.paper import dilated

__all__ = ["remove_rules", "stroke_half_width", "thin", "normalize_stroke_width", "MNIST_HALF_WIDTH"]

MNIST_HALF_WIDTH = 0.065  # stroke half-width / longer side of the digit, as in MNIST's 20 px box
_WORK = 64  # longer side (px) at which strokes are measured and redrawn
_EIGHT = np.ones((3, 3), bool)


def _long_runs(mask: np.ndarray, length: int, axis: int, gap: int = 1) -> np.ndarray:
    """The region of straight runs of ``mask`` at least ``length`` long along ``axis`` (tolerating a
    slight tilt, and gaps in the run shorter than ``gap``): the run's pixels, widened a little across
    it and joined over the gaps, so that one rule is one connected region."""
    band = dilated(mask, kernel=_line(5, 1 - axis))  # a 3-degree tilt stays inside a 5-px band over the run
    if gap > 1:
        band = cv2.morphologyEx(band.view(np.uint8), cv2.MORPH_CLOSE, _line(gap, axis)).view(bool)
    # Where ``length`` pixels in a row are all ink: a minimum filter (the edge mirrored, as scipy.ndimage does).
    full = cv2.erode(band.view(np.uint8), _line(length, axis), borderType=cv2.BORDER_REFLECT).view(bool)
    return dilated(full, kernel=_line(length, axis)) & band


def _line(length: int, axis: int) -> np.ndarray:
    """A straight structuring element ``length`` pixels long along ``axis``."""
    return np.ones((1, length) if axis == 1 else (length, 1), np.uint8)


def _closed(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``mask`` closed by ``kernel``, nothing beyond the edge (as scipy's ``binary_closing``)."""
    closed = cv2.morphologyEx(
        mask.view(np.uint8), cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return closed.view(bool)


def _along_fitted_line(mask: np.ndarray, component: np.ndarray, box: tuple[slice, slice], axis: int) -> np.ndarray:
    """Pixels of ``mask`` within the rule's thickness of the straight line fitted to ``component``.

    The line is fitted only where the component is as thin as the rule
    itself (most of its length): where a digit's stroke touches or runs along
    the rule, the component is wider there and those positions are left out.
    """
    part = component[box] if axis == 1 else component[box].T  # rows: across the rule, cols: along it
    counts = part.sum(axis=0)  # pixels across the rule at each position along it
    positions = np.flatnonzero(counts)
    thickness = float(np.median(counts[positions]))
    thin = positions[counts[positions] <= thickness + 1]
    across = (part[:, thin] * np.arange(part.shape[0])[:, None]).sum(0) / counts[thin]
    slope, offset = np.polyfit(thin.astype(np.float64), across, 1) if len(thin) > 1 else (0.0, float(across.mean()))
    half = thickness / 2 + 0.5
    ink = mask[box] if axis == 1 else mask[box].T
    rows = np.arange(part.shape[0])[:, None]
    near = np.abs(rows - (slope * np.arange(part.shape[1])[None, :] + offset)) <= half + 1
    # Where a stroke runs along the rule, the ink across it is thicker than the rule: keep that ink.
    line = ink & near & (_run_lengths(ink, 0) <= 2 * half + 2)
    out = np.zeros_like(mask)
    out[box] = line if axis == 1 else line.T
    return out


def _run_lengths(mask: np.ndarray, axis: int) -> np.ndarray:
    """For every pixel of ``mask``, the length of the straight run of ink through it along ``axis``."""
    line = np.zeros((3, 3), bool)
    if axis == 1:
        line[1, :] = True
    else:
        line[:, 1] = True
    runs, _ = ndimage.label(mask, structure=line)
    return np.bincount(runs.ravel())[runs]


def _widened(box: tuple[slice, slice], axis: int, shape: tuple[int, int], by: int = 3) -> tuple[slice, slice]:
    """``box`` grown by ``by`` pixels across the rule (so the whole rule's thickness is inside)."""
    across = 1 - axis
    grown = slice(max(0, box[across].start - by), min(shape[across], box[across].stop + by))
    return (grown, box[1]) if across == 0 else (box[0], grown)


def _may_hold_rules(mask: np.ndarray, axis: int, size: int) -> bool:
    """False when no rule along ``axis`` can be in ``mask``: a cheap test before the search.

    A rule over 85% of ``size``, tilted at most 3 degrees, lies within a band
    of 0.05 * size + 6 lines across it, so within two neighbouring blocks of
    that many lines, and has ink in 85% of the positions along it (in a
    photo, broken by gaps: 70% of them is enough to look further), with ink
    in the first and the last 15% of them (a digit drawn inside a canvas's
    margins has not).
    """
    # Rows across the rules, columns along them; a transposed copy made by OpenCV reduces 3x faster than a view.
    ink = mask if axis == 1 else cv2.transpose(mask.view(np.uint8)).view(bool)
    block = int(0.05 * size) + 6
    n = ink.shape[0] // block
    if n < 2:
        return True
    blocks = np.any(ink[: n * block].reshape(n, block, -1), axis=1)  # (n, size): ink anywhere in the block
    pairs = np.logical_or(blocks[:-1], blocks[1:])
    edge = max(1, int(0.15 * size))  # a run over 85% of the width starts in its first 15% and ends in its last
    reach = pairs[:, :edge].any(axis=1) & pairs[:, -edge:].any(axis=1)
    share = np.count_nonzero(pairs, axis=1) / pairs.shape[1]  # of the positions along, those with ink
    return bool(((share > 0.7) & reach).any())


def remove_rules(mask: np.ndarray) -> np.ndarray:
    """``mask`` without the lines of ruled or squared paper.

    A rule is a straight run across more than 85% of the image (gaps of up to
    5% of it bridged), thin for its length, with at least one more like it (a
    single long stroke is a "1").
    Each is fitted with a straight line and only the pixels along that line
    go; strokes that crossed it are joined again across the gap.
    """
    h, w = mask.shape
    if min(h, w) < 64:  # a digit-sized image has no paper lines to speak of
        return mask
    rules = np.zeros_like(mask)
    for axis, size in ((1, w), (0, h)):  # horizontal rules (runs along x), then vertical ones
        if not _may_hold_rules(mask, axis, size):
            continue
        # A faint rule in a photo comes out of binarisation broken: gaps along it are bridged for the search.
        runs = _long_runs(mask, max(16, size // 4), axis, gap=max(9, size // 20))
        labels, n = ndimage.label(runs, structure=_EIGHT)
        boxes = ndimage.find_objects(labels)
        found = [k + 1 for k, box in enumerate(boxes) if box[axis].stop - box[axis].start > 0.85 * size]
        if len(found) < 2:
            continue
        for k in found:
            box = _widened(boxes[k - 1], axis, mask.shape)
            rules |= _along_fitted_line(mask, (labels == k) & mask, box, axis)
    if not rules.any():
        return mask
    kept = mask & ~rules
    # A stroke crossing a rule continues on both sides: close the gap across it.
    bridged = _closed(kept, _line(7, 0)) | _closed(kept, _line(7, 1))
    return kept | (bridged & rules & mask)


def stroke_half_width(mask: np.ndarray) -> float:
    """Median half-width (px) of the strokes: the distance to the edge along their middle line."""
    dist = cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # exact Euclidean
    ridge = mask & (dist >= cv2.dilate(dist, _EIGHT.view(np.uint8)))
    return float(np.median(dist[ridge])) if ridge.any() else 0.0


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


def normalize_stroke_width(ink: np.ndarray, *, low: float = 0.4, high: float = 2.0, blob: float = 2.6) -> np.ndarray:
    """A cropped digit's ink (H, W) in [0, 1], redrawn with MNIST's stroke width if its own is far off.

    Strokes within ``low``..``high`` times MNIST's width are left as they are
    (99% of MNIST's own digits are); others are thinned to their middle lines
    (``thin``) and drawn again with a round pen of MNIST's width. Ink more than
    ``blob`` times as wide is no pen stroke but a filled shape (a shoe, a
    blot): it is left as it is, for the "not a digit" checks to see.
    """
    h, w = ink.shape
    if min(h, w) == 0:
        return ink
    scale = _WORK / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Area-averaged, then cut at half the peak: a hair line 4x thinner than a pixel here still stays a line.
    work = np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
    mask = work > 0.5 * work.max()
    target = MNIST_HALF_WIDTH * _WORK
    half = stroke_half_width(mask)
    if half == 0.0 or low * target <= half <= high * target or half > blob * target:
        return ink
    pad = int(np.ceil(target)) + 1
    to_middle = cv2.distanceTransform((~thin(np.pad(mask, pad))).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    redrawn = np.clip(target + 0.5 - to_middle, 0.0, 1.0).astype(np.float32)  # a round pen, anti-aliased edge
    rows, cols = np.flatnonzero(redrawn.any(axis=1)), np.flatnonzero(redrawn.any(axis=0))
    return redrawn[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
