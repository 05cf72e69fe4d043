"""A row of handwritten digits (a house number, a code) -> one MNIST-style image per digit.

The ink is found as ``to_mnist`` finds it; a point, comma, colon or dash
between the digits is set aside (``mnistlab.reading.marks``); connected
components are grouped into digits (broken strokes merged, small fragments
joined to a neighbour), and groups much wider than the row is tall are split
where the ink is thinnest.
``row_slant`` and ``upright_columns`` give the lean of the hand, along which
touching digits are cut apart (``mnistlab.trust.numbers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from mnistlab.reading.marks import find_marks
from mnistlab.reading.paper import components
from mnistlab.reading.steps import digit_from, holds_writing, ink_mask_and_specks

__all__ = [
    "segment_digits",
    "find_digits",
    "FoundRow",
    "cut",
    "row_slant",
    "upright_columns",
    "writing_lines",
    "ROW_SHORT_SIDE",
]

# px: a row is read at a size that keeps at least this much of its height (``to_grey``'s ``min_short_side``).
# A tight crop of a long number, reduced to the work size like any photo, left its digits 10-20 px tall, too
# few to read: a crop of 30 printed digits read as a confident "1117". Rows up to 3.3 times as long as high
# (those the reading steps' pixel sizes were chosen on) read as before. On canvas rows of other hands (dev seed
# 5, 30 a source and length): 14-20 digits exact pen 22 -> 26, fonts 25 -> 27, optdigits 11 -> 13; 8-12
# digits 25 -> 27, 25 -> 26, 21 -> 22; at 64 px about half of that, at 128 px no more.
ROW_SHORT_SIDE = 96


def _labelled(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask``: int32 labels (H, W), 1 to n in the order of each one's first pixel
    row by row (as ``scipy.ndimage.label`` numbers them: ties below are broken by label), and n.
    OpenCV finds them several times faster, numbered in an order of its own."""
    count, found = components(mask)
    ys, xs = np.nonzero(found)
    raw = found[ys, xs]  # in row-by-row order
    _, first = np.unique(raw, return_index=True)
    renumbered = np.zeros(count, np.int32)
    renumbered[raw[np.sort(first)]] = np.arange(1, count, dtype=np.int32)
    return renumbered[found], count - 1


def _row_ranges(ys: np.ndarray, lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n + 1,) each label's first row and last row + 1, from its pixels' rows ``ys`` (label 0, the paper: 0, 0)."""
    top, bottom = np.full(n + 1, np.iinfo(np.intp).max), np.zeros(n + 1, np.intp)
    top[0] = 0
    np.minimum.at(top, lab, ys)
    np.maximum.at(bottom, lab, ys + 1)
    return top, bottom


# --- rows of digits ---------------------------------------------------------------


# Pieces of one digit stacked one above the other (a hair pen's slanted 1 broken across its middle): neighbouring
# groups whose rows overlap by at most a tenth of the shorter, each under _STACKED_PART of the tallest group's
# height, together at most _STACKED_SPAN of it, and at most _STACKED_GAP of it apart (upright columns) are one
# digit (the tallest, not the median: in a row of three digits, the two pieces of one are the median). On dev
# seeds 41-51 (odd; 100 rows a source each) it joined the 1 of 1374 (read 11374 before); no other row went from
# right to wrong or from wrong to right.
_STACKED_PART, _STACKED_SPAN, _STACKED_GAP = 0.8, 1.25, 0.25


def _group_components(mask: np.ndarray, slant: float = 0.0, overlap: float = 0.3) -> list[np.ndarray]:
    """Masks of the digits in a row, left to right.

    Components whose upright x-ranges (the hand's lean ``slant`` sheared away:
    two slanted 1s side by side overlap in x, not upright) overlap by more than
    ``overlap`` of the narrower one are one digit (the two strokes of a 5 or a
    4); a group with less than 35% of the median group's ink and under 60% of
    the median height is a fragment (a 5's detached bar) and joins its nearest
    neighbour; groups stacked one above the other, each too short to be a
    digit, are one (``_STACKED_PART``).
    """
    labels, n = _labelled(mask)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    areas = np.bincount(lab, minlength=n + 1)
    top, bottom = _row_ranges(ys, lab, n)
    # Sheared about the row's middle: the pieces of one slanted stroke keep one upright column. (Sheared about
    # each piece's own middle, the top and foot of a broken 1 stood apart by the slant times their distance,
    # and a 1 leaning into the 6 beside it overlapped it: 645216 was read 64526 on dev seed 41.)
    upright = xs - slant * (ys - ys.mean())
    first, last = np.full(n + 1, np.inf), np.full(n + 1, -np.inf)  # (n + 1,): each label's upright x-range
    np.minimum.at(first, lab, upright)
    np.maximum.at(last, lab, upright + 1)
    spans = sorted((float(first[i]), float(last[i]), i) for i in range(1, n + 1))
    groups: list[list[int]] = []
    ranges: list[list[float]] = []
    for x0, x1, label in spans:
        if ranges:
            g0, g1 = ranges[-1]
            if min(x1, g1) - max(x0, g0) > overlap * min(x1 - x0, g1 - g0):
                groups[-1].append(label)
                ranges[-1] = [min(x0, g0), max(x1, g1)]
                continue
        groups.append([label])
        ranges.append([x0, x1])

    def rows_of(group: list[int]) -> tuple[int, int]:
        return int(top[group].min()), int(bottom[group].max())

    while len(groups) > 1:
        ink = np.array([areas[g].sum() for g in groups])
        heights = np.array([b - a for a, b in map(rows_of, groups)])
        small = (ink < 0.35 * np.median(ink)) & (heights < 0.6 * np.median(heights))
        if not small.any():
            break
        i = int(np.flatnonzero(small)[np.argmin(ink[small])])
        gap_left = ranges[i][0] - ranges[i - 1][1] if i > 0 else np.inf
        gap_right = ranges[i + 1][0] - ranges[i][1] if i + 1 < len(groups) else np.inf
        _join(groups, ranges, min(i, i - 1 if gap_left <= gap_right else i + 1))
    while (k := _stacked(groups, ranges, rows_of)) is not None:
        _join(groups, ranges, k)
    return [np.isin(labels, g) for g in groups]


def _join(groups: list[list[int]], ranges: list[list[float]], i: int) -> None:
    """Groups ``i`` and ``i + 1`` made one, in place."""
    groups[i] += groups.pop(i + 1)
    right = ranges.pop(i + 1)
    ranges[i] = [min(ranges[i][0], right[0]), max(ranges[i][1], right[1])]


def _stacked(
    groups: list[list[int]], ranges: list[list[float]], rows_of: Callable[[list[int]], tuple[int, int]]
) -> int | None:
    """The first ``i`` whose groups ``i`` and ``i + 1`` are pieces of one digit stacked one above the other
    (``_STACKED_PART``; ``rows_of(group)``: its first and last row + 1), None where there are none."""
    if len(groups) < 2:
        return None
    rows = [rows_of(g) for g in groups]
    tallest = max(b - a for a, b in rows)
    for i in range(len(groups) - 1):
        (a0, a1), (b0, b1) = rows[i], rows[i + 1]
        shorter = min(a1 - a0, b1 - b0)
        if (
            min(a1, b1) - max(a0, b0) <= 0.1 * shorter
            and max(a1 - a0, b1 - b0) < _STACKED_PART * tallest
            and max(a1, b1) - min(a0, b0) <= _STACKED_SPAN * tallest
            and ranges[i + 1][0] - ranges[i][1] <= _STACKED_GAP * tallest
        ):
            return i
    return None


def _split_touching(part: np.ndarray, h: int, max_aspect: float = 1.8) -> list[np.ndarray]:
    """Split a group much wider than the row's digits are tall (``h``: digits that
    touch) at the columns with least ink."""
    cols = np.flatnonzero(part.any(axis=0))
    w = cols[-1] - cols[0] + 1
    if w <= max_aspect * h:
        return [part]
    return cut(part, max(2, round(w / (0.85 * h))))  # a digit is about 0.85 times as wide as tall


def cut(part: np.ndarray, n: int) -> list[np.ndarray]:
    """``part`` cut into ``n`` pieces side by side, each cut at the column with least ink near its share."""
    cols = np.flatnonzero(part.any(axis=0))
    w = cols[-1] - cols[0] + 1
    profile = part[:, cols[0] : cols[-1] + 1].sum(axis=0)
    cuts = [cols[0]]
    for k in range(1, n):
        lo, hi = int(w * (k - 0.3) / n), int(w * (k + 0.3) / n)
        cuts.append(cols[0] + lo + int(np.argmin(profile[lo : hi + 1])))
    cuts.append(cols[-1] + 1)
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        piece = np.zeros_like(part)
        piece[:, a:b] = part[:, a:b]
        if piece.any():
            pieces.append(piece)
    return pieces


class FoundRow(NamedTuple):
    """What ``find_digits`` finds in a row: its ink (H, W), one boolean mask per digit left to right, the
    hand's slant, whether the image is a clean drawing, and for each mark that is no digit (a point, comma,
    colon or dash: ``mnistlab.reading.marks``; a point, comma or colon only between two digits) how many of the
    masks lie left of it."""

    ink: np.ndarray
    parts: list[np.ndarray]
    slant: float
    drawing: bool
    marks: list[int]


def find_digits(image, *, faint: bool = False, closer: bool = False) -> FoundRow:
    """The digits of a row (see ``segment_digits``) and the marks between them (``FoundRow``). ``faint``,
    ``closer``: a photo's second and third looks (``ink_and_mask``). A strip is read at a size that keeps
    ``ROW_SHORT_SIDE`` px of its height."""
    ink, mask, raw, drawing = ink_mask_and_specks(image, faint=faint, closer=closer, min_short_side=ROW_SHORT_SIDE)
    slant = row_slant(mask)
    # As for one digit (``to_mnist``): ink that spans too little of the image is a speck, not a row.
    if not holds_writing(mask):
        return FoundRow(ink, [], slant, drawing, [])
    marks, mask = find_marks(raw, mask, slant)
    groups = _group_components(mask, slant) if mask.any() else []
    if not groups:
        return FoundRow(ink, [], slant, drawing, [])
    row_height = int(np.median([np.ptp(np.flatnonzero(g.any(axis=1))) + 1 for g in groups]))
    parts = [piece for group in groups for piece in _split_touching(group, row_height)]
    middles = [_upright_middle(part, slant) for part in parts]
    left_of = [sum(m < mark.x for m in middles) for mark in marks]
    between = [k for k, mark in zip(left_of, marks) if mark.dash or 0 < k < len(parts)]
    return FoundRow(ink, parts, slant, drawing, between)


def _upright_middle(part: np.ndarray, slant: float) -> float:
    """The mean upright column of ``part``'s pixels (the slant sheared away about the image's middle row, as
    ``find_marks`` gives a mark's)."""
    ys, xs = np.nonzero(part)
    return float(np.mean(xs - slant * (ys - part.shape[0] / 2)))


def writing_lines(ink: np.ndarray) -> int:
    """How many lines of writing ``ink`` (H, W; paper 0) holds: runs of inked pixel rows, parted by rows with no
    ink, each at least a third as tall as the tallest run and at least as wide as it is tall.

    A number is one line. Two numbers one above the other are two: stacked digits are grouped as one digit's
    pieces, and such a page was read as one confident number ("188" over "556843" as 556843). An underline, a 5's
    bar drawn apart from it or a 1 broken across its middle is no line of its own (too low, or too narrow).
    """
    inked = (ink > 0).any(axis=1)
    edges = np.flatnonzero(np.diff(np.r_[0, inked.astype(np.int8), 0]))
    starts, ends = edges[::2], edges[1::2]  # (runs,) each: first row, last row + 1
    if len(starts) < 2:
        return len(starts)
    tallest = (ends - starts).max()
    lines = 0
    for top, bottom in zip(starts, ends):
        columns = np.flatnonzero((ink[top:bottom] > 0).any(axis=0))
        lines += 3 * (bottom - top) >= tallest and columns[-1] - columns[0] + 1 >= bottom - top
    return int(lines)


def segment_digits(image) -> list[np.ndarray]:
    """A row of handwritten digits -> one (28, 28) uint8 MNIST-style image per digit, left to right.

    Marks that are no digit (a point, comma, colon or dash) are left out; connected components are grouped
    into digits (broken strokes merged, small fragments joined to their neighbour), groups much wider than
    tall are split
    where the ink is thinnest (touching digits), and each digit goes through
    ``crop_to_ink``, ``fit_to_box`` and ``center_by_mass`` like ``to_mnist``.
    """
    ink, parts = find_digits(image)[:2]
    return [digit_from(ink, part) for part in parts]


# --- the row's slant ----------------------------------------------------------------


def row_slant(mask: np.ndarray) -> float:
    """The hand's lean: columns of shift per row downwards (negative when it leans right).

    The ink-weighted median of the second-moment slants (covariance of x and y
    over the variance of y) of the components at least half as tall as the
    tallest, held within +-0.6 (about 30 degrees).
    """
    labels, n = _labelled(mask)
    if n == 0:
        return 0.0
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    count = np.bincount(lab, minlength=n + 1).astype(float)
    mean_y = np.bincount(lab, ys, n + 1) / np.maximum(count, 1)
    mean_x = np.bincount(lab, xs, n + 1) / np.maximum(count, 1)
    dy, dx = ys - mean_y[lab], xs - mean_x[lab]
    var_y, cov_xy = np.bincount(lab, dy * dy, n + 1), np.bincount(lab, dx * dy, n + 1)
    top, bottom = _row_ranges(ys, lab, n)
    heights = bottom - top
    tall = (heights >= 0.5 * heights.max()) & (var_y > 0)
    if not tall.any():
        return 0.0
    slopes, weights = cov_xy[tall] / var_y[tall], count[tall]
    order = np.argsort(slopes)
    cumulative = np.cumsum(weights[order])
    return float(np.clip(slopes[order][np.searchsorted(cumulative, cumulative[-1] / 2)], -0.6, 0.6))


def upright_columns(part: np.ndarray, slant: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and upright columns (float) of ``part``'s pixels: the column each would have
    with the hand's lean ``slant`` sheared away, so that a cut along the slant is a cut at one value."""
    ys, xs = np.nonzero(part)
    return ys, xs, xs - slant * (ys - ys.mean())
