"""Marks in a row of digits that are no digit: a decimal point, a comma, a colon, a dash.

``read_number`` reads digits. A point or a comma between them is as small as
a speck (``drop_specks`` leaves it out) or, kept, was joined to a neighbouring
digit as a fragment of it; a dash was joined or read as a digit: 12.50 came
back as a confident 1250, 3-4 as 34. A mark found here is taken out of the
row's mask, so that no digit is read with it, and the number's reader says
the number holds it (``mnistlab.trust.numbers.doubt_marks``).

A mark is told by its size and place against the row's digits (the
components at least half as tall as the tallest): a point or comma is at most
``_POINT`` of the digits' height wide and high and sits in the lower part of
their band (a comma may hang below it); a dash is flat, ``_DASH`` of their
height long, in the band's middle; a colon is a point with a dot above it. No
piece of ink but a dot lies above a point or comma (the foot of a hair pen's
1 broken in two is no comma). Each lies in a gap: its upright columns (the
hand's slant sheared away) hold no pixel of a digit's, or of any piece too big
for a mark (a hair pen's 5 broken in two), so that a detached bar of a 4 or a
5 stays the digit's. And it is no smaller than the pen's stroke
and ``_SPECK`` of the digits' height. Dust that size, low between two digits,
would pass for a point: a point or comma counts only between two digits
(``segment.find_digits``), since one before or after a row is as likely dust.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from mnistlab.reading.width import stroke_half_width

__all__ = ["Mark", "find_marks"]

_DIGIT = 0.5  # components at least this share of the tallest one's height are digits (or most of one)
_POINT = (0.4, 0.5)  # a point's or comma's width and height at most, in digit heights (a comma's tail is tall)
_SPECK = 0.04  # ... its longer side at least this (and the pen's width, and 3 px): dust is smaller
_LOW = 0.6  # ... its middle at least this far down the digits' band
_HANG = 0.35  # ... and at most this far below the band's foot (a comma's tail)
_DOT = 0.3  # a point without a tail (a colon's upper one) at most this wide and high
_DASH = (0.2, 0.8)  # a dash's length, in digit heights
_FLAT = 2.5  # ... at least this many times its height
_MIDDLE = (0.3, 0.75)  # ... its middle within this part of the band, from its top (a colon's dot: above _LOW)
_MIN_PX = 8  # px: digits shorter than this carry no marks worth telling apart from noise


class Mark(NamedTuple):
    """A mark in a row: its upright x-centre (px: the row's slant sheared away about the image's middle row),
    and whether it is a dash (else a point, comma or colon)."""

    x: float
    dash: bool


def find_marks(raw: np.ndarray, mask: np.ndarray, slant: float) -> tuple[list[Mark], np.ndarray]:
    """The marks in a row, left to right, and ``mask`` without them.

    ``raw``: the row's mask before ``drop_specks`` (H, W) bool; ``mask``: after it.
    """
    count, labels, stats, centres = cv2.connectedComponentsWithStats(raw.view(np.uint8), connectivity=8)
    if count < 3:  # the paper and at most one component: no digit beside a mark
        return [], mask
    x, y, w, h = (stats[1:, i] for i in range(4))  # (n,) each: the components' boxes
    tallest = h.max()
    digit = h >= _DIGIT * tallest
    if tallest < _MIN_PX or digit.all():
        return [], mask
    top, foot = float(np.median(y[digit])), float(np.median(y[digit] + h[digit]))
    band = max(foot - top, 1.0)
    pen = 2 * stroke_half_width(mask)
    left = x - slant * (centres[1:, 1] - raw.shape[0] / 2)  # upright columns at each component's own middle row
    right = left + w
    mid_y = centres[1:, 1]
    inked = np.maximum(h, w) >= max(pen, _SPECK * band, 3.0)
    point = (w <= _POINT[0] * band) & (h <= _POINT[1] * band) & inked
    dot = (w <= _DOT * band) & (h <= _DOT * band) & inked  # no tail: a colon's upper point
    low = point & (mid_y >= top + _LOW * band) & (mid_y <= foot + _HANG * band)
    dash = (w >= _DASH[0] * band) & (w <= _DASH[1] * band) & (w >= _FLAT * h)
    dash &= (mid_y >= top + _MIDDLE[0] * band) & (mid_y <= top + _MIDDLE[1] * band)
    upper = dot & (mid_y >= top + _MIDDLE[0] * band) & (mid_y < top + _LOW * band)
    if not (low | dash).any():  # most rows: nothing shaped or placed like a mark, and no pixel looked at below
        return [], mask
    # Gaps between ink that could be no mark: digits, and the pieces of a digit broken in two (a hair pen's).
    clear = _in_gaps(labels, count, ~(point | dash | dot), slant) & ~digit
    # A low piece under another piece that is no dot is a broken digit's foot (a hair pen's 1), not a comma.
    low &= ~_under(left, right, mid_y, ~digit & ~dot)
    marks = np.flatnonzero((low | dash) & clear)
    if not marks.size:
        return [], mask
    # A colon is one mark: its lower point is reported, its upper one only taken out of the mask.
    colon_tops = np.flatnonzero(upper & clear & _has_point_below(left, right, low & clear))
    taken = np.isin(labels, np.concatenate([marks, colon_tops]) + 1)
    return sorted(Mark(float((left[i] + right[i]) / 2), bool(dash[i])) for i in marks), mask & ~taken


def _in_gaps(labels: np.ndarray, count: int, body: np.ndarray, slant: float) -> np.ndarray:
    """(n,) bool: which components' upright columns (their pixels', the slant sheared away) hold no pixel of
    a ``body`` component's."""
    ys, xs = np.nonzero(labels)
    which = labels[ys, xs] - 1  # (pixels,) each pixel's component, 0 to n - 1
    upright = np.rint(xs - slant * (ys - labels.shape[0] / 2)).astype(np.intp)
    upright -= upright.min()
    per_column = np.zeros(upright.max() + 2, np.intp)  # (columns + 1,): body pixels in each upright column
    np.add.at(per_column, upright[body[which]], 1)
    before = np.concatenate([[0], np.cumsum(per_column)])  # body pixels left of each column
    first = np.full(count - 1, np.iinfo(np.intp).max)
    last = np.full(count - 1, -1)
    np.minimum.at(first, which, upright)
    np.maximum.at(last, which, upright)
    return before[last + 1] - before[first] == 0


def _under(left: np.ndarray, right: np.ndarray, mid_y: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """(n,) bool: which components have one of ``pieces`` above their middle in their upright columns."""
    return np.any(_meets(left, right, pieces) & (mid_y[None, pieces] < mid_y[:, None]), axis=1)


def _has_point_below(left: np.ndarray, right: np.ndarray, low: np.ndarray) -> np.ndarray:
    """(n,) bool: which components have a low point (``low``) in their upright columns."""
    return np.any(_meets(left, right, low), axis=1)


def _meets(left: np.ndarray, right: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """(n, pieces) bool: whether each component's upright columns [left, right) meet each of ``pieces``'."""
    return (left[:, None] < right[None, pieces]) & (right[:, None] > left[None, pieces])
