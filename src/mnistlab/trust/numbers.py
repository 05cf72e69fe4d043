"""Touching digits in a row of handwriting: a part read as the digits it holds.

Slanted hands lean their digits into each other, so one connected part of a
row may hold two or three digits. A part the reader doubts, or one wider than
the row's other digits, is over-cut along the hand's slant (every tenth of the
row height, across the sheared columns), each run of neighbouring pieces that
could be one digit is read in one batch, and dynamic programming picks how many
digits the part holds and where they are: the sum of the pieces' scores
(classifier's log-probability, the not-a-digit detector's doubt, widths against
the row's own digits), less a cost per extra digit and a prior on the count
from the part's width. A classifier reads fragments of digits confidently, so
the detector and the widths carry as much weight as the probabilities. A hand
that writes without lifting the pen joins two digits with a thin stroke, which
reads as a 1: a thin run read as a 1 whose ink goes on across both of its cuts
may be left out, at a cost (never two neighbouring runs: that would drop a digit).

The weights were chosen on generated rows (``mnistlab.testing.hands``, dev
seeds apart from the benchmark's) by exact reads per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mnistlab.errors import ImageError
from mnistlab.reading.segment import upright_columns, writing_lines
from mnistlab.reading.steps import digit_from

if TYPE_CHECKING:  # the Predictor's module imports this one
    from mnistlab.trust.predict import Predictor

__all__ = [
    "Row",
    "Budget",
    "row_of",
    "read_part",
    "check_row_size",
    "doubt_marks",
    "MARK_BESIDE",
    "ROWS",
    "doubted",
    "keep_marks",
    "MAX_ROW_PARTS",
    "ROW_IMAGES",
    "TOO_BUSY",
]

_STEP = 0.1  # cut spacing, in row heights
_EDGE = 0.2  # no cut nearer a part's ends than this many row heights
_MAX_CUTS = 40  # parts wider than about 4 row heights are left as they are
_PIECE = (0.3, 1.0)  # widths (row heights) of runs of pieces read as one digit; single pieces always are
_RECHECK = 1.2  # a confident part is re-read when this many times as wide as the row's digits
_DETECTOR = 2.0  # weight of log(1 - detector's not-a-digit probability)
_NARROW, _WIDE = 0.6, 1.5  # widths (in the row's digit widths) beyond which a piece is penalised ...
_WIDTH_COST = 3.0  # ... by this much per digit width (narrow only for digits other than 1)
_EXTRA_DIGIT = 2.0  # cost of each digit beyond the first in a part
_COUNT_COST, _COUNT_SLACK = 1.0, 0.4  # cost per digit of a count further than the slack from width / digit width
# A pen stroke joining two digits (``_joining``): at most this wide (its ink's upright width, in row heights; on
# dev rows 0.35 and 0.5 read the same, 0.25 changed none), and left out at this cost, never two runs in a row.
# Read as a digit instead, it would pay _EXTRA_DIGIT (0.5 more than leaving it out) and its own value, less what
# the count saves (at most _COUNT_COST): it stays a 1 only where the part's width asks for one more digit and it
# reads well as a 1 (its value above -0.5 where the count saves all of _COUNT_COST).
# On dev seeds 41, 43, 45, 47 and 49 (300 rows a source each), costs of 2.5 (before), 2.0, 1.5 and 1.0 read
# 1,316, 1,326, 1,329 and 1,332 of the 1,500 pen rows exactly; at 1.5 optdigits 1,328 (1,329 before), fonts
# 1,453 (the same) and 207 rows of the 4,500 confidently wrong (210 before). At 1.0 a 2 touching a 0 and a 3 lost
# its two edges to runs left out and read as a 0 (``test_a_pen_stroke_joining_two_digits_is_not_read_as_a_1``).
_JOIN_WIDTH = 0.35
_LEAVE_OUT = 1.5
# What one look at a row may cost. Every part is read once, and a part re-read (above) costs an image a run of
# its pieces. Rows of 14-20 digits by other hands (dev seed 5, 30 a source) came out in at most 37 parts and took
# at most 876 images a look (549 at the 95th percentile); a 679-byte strip of dashes came out in 525 parts and
# took 19,083 images (19 s of CPU) over its three looks. Past ROW_IMAGES, a part is left as read once, doubted.
MAX_ROW_PARTS = 80
ROW_IMAGES = 1_200
TOO_BUSY = "too much ink in one row to look at each part closely; crop the image to the number"


@dataclass
class Budget:
    """The images one look at a row may still read to re-read its parts (``ROW_IMAGES`` at first)."""

    left: int = ROW_IMAGES

    def take(self, n: int) -> bool:
        """Whether ``n`` more images fit; if so, they are taken."""
        if n > self.left:
            return False
        self.left -= n
        return True


def check_row_size(n_parts: int) -> None:
    """Refuse a row of more than ``MAX_ROW_PARTS`` parts, before any is read: no number holds that many."""
    if n_parts > MAX_ROW_PARTS:
        raise ImageError(
            f"The image holds {n_parts:,} separate marks in one row, more than a number of up to 20 digits "
            f"makes ({MAX_ROW_PARTS}); crop it to the number, or cut a long number into parts of at most 15 digits."
        )


# Said of the digit beside a mark that is no digit (``mnistlab.reading.marks``): the number's value may hang on
# it (12.50 read 1250, 3-4 read 34), and the digits alone cannot say so.
MARK_BESIDE = "a point, comma, colon or dash beside it is left out of the number"


def doubt_marks(by_part: list[list[dict]], marks: list[int]) -> list[list[dict]]:
    """``by_part`` (each part's digits, as ``read_part`` gives them) with the digit before each mark doubted
    (``marks``: how many parts lie left of each; a mark before every part doubts the first digit), its reason
    ``MARK_BESIDE``. A digit doubted for a reason of its own keeps it."""
    out = [list(digits) for digits in by_part]
    for k in marks:
        i = k - 1 if k > 0 else 0
        while 0 <= i < len(out) and not out[i]:  # a part read as no digit at all (none does today)
            i += -1 if k > 0 else 1
        if not 0 <= i < len(out):
            continue
        j = -1 if k > 0 else 0
        digit = out[i][j]
        if digit["confident"]:
            out[i][j] = {**digit, "confident": False, "reason": MARK_BESIDE}
    return out


def keep_marks(first: dict, answer: dict) -> dict:
    """``answer`` (a doubted row read again, ``surer_row``'s pick) with the digits that ``first`` doubted for a mark
    beside them (``MARK_BESIDE``) doubted again: a later look that misses the mark (a comma in 31,6) reads no
    surer what the number is. A later reading of another count of digits stands as it is: the first look's parts,
    and the places of its marks among them, were not the number's (a hair pen's 77506 in 10 pieces, 2 "marks")."""
    marked = [i for i, d in enumerate(first["digits"]) if d.get("reason") == MARK_BESIDE]
    if not marked or answer is first or len(answer["digits"]) != len(first["digits"]):
        return answer
    digits = list(answer["digits"])
    for i in marked:
        if digits[i]["confident"]:
            digits[i] = {**digits[i], "confident": False, "reason": MARK_BESIDE}
    return {**answer, "digits": digits, "confident": False}


# Said of every digit of an image that holds more than one row of writing (``reading.segment.writing_lines``).
ROWS = "the image holds more than one row of writing; give each row as an image of its own"


def doubted(by_part: list[list[dict]], marks: list[int], ink: np.ndarray) -> list[dict]:
    """The row's digits left to right, from ``by_part`` (each part's, as ``read_part`` gives them): the digit
    beside each mark doubted (``doubt_marks``), and every confident digit doubted, its reason ``ROWS``, where
    ``ink`` (the image's, as ``find_digits`` gives it) holds more than one line of writing."""
    results = [r for part in doubt_marks(by_part, marks) for r in part]
    if writing_lines(ink) < 2:
        return results
    return [r if not r["confident"] else {**r, "confident": False, "reason": ROWS} for r in results]


@dataclass(frozen=True)
class Row:
    """What a part is measured against: the row's height, the hand's slant and a typical digit's upright width."""

    height: int
    slant: float
    digit_width: float


def row_of(parts: list[np.ndarray], wholes: list[dict], slant: float) -> Row:
    """The row's measures: median height of its parts, and median upright width of the parts read confidently
    as digits other than 1 (0.6 heights when there are none)."""
    height = int(np.median([np.ptp(np.flatnonzero(p.any(axis=1))) + 1 for p in parts]))
    widths = [_upright_width(p, slant) for p, w in zip(parts, wholes) if w["confident"] and w["digit"] != 1]
    return Row(height, slant, float(np.median(widths)) if widths else 0.6 * height)


def _upright_width(part: np.ndarray, slant: float) -> float:
    return float(np.ptp(upright_columns(part, slant)[2]) + 1)


def read_part(
    predictor: Predictor, ink: np.ndarray, part: np.ndarray, whole: dict, row: Row, budget: Budget
) -> list[dict]:
    """The digits in one part of a row (``whole``: the part read as one digit), left to right; a re-reading
    takes its images from ``budget`` (the look's), and where they do not fit the part stays ``whole``, doubted."""
    ink, part = _around(ink, part)
    ys, xs, upright = upright_columns(part, row.slant)
    lo, width = float(upright.min()), float(np.ptp(upright) + 1)
    if whole["confident"] and width <= _RECHECK * row.digit_width:
        return [whole]
    inner = np.arange(_EDGE * row.height, width - _EDGE * row.height + 1e-9, _STEP * row.height)
    if len(inner) > _MAX_CUTS:  # a row whose height was misjudged (a page of specks): no reading to gain
        return [whole]
    bounds = lo + np.concatenate([[0.0], inner, [width]])
    upright_sorted = np.sort(upright)
    spans, ink_widths = _spans(upright_sorted, bounds, row.height)
    if len(spans) < 2:
        return [whole]
    if not budget.take(len(spans)):
        return [dict(whole, confident=False, reason=TOO_BUSY)]
    images = np.stack([digit_from(ink, _piece(part, ys, xs, upright, bounds[i], bounds[j])) for i, j in spans])
    proba = predictor.classify(images)
    not_a_digit = predictor.reader.not_a_digit(images)  # the reader's other scores: for the chosen only
    digits = proba.argmax(axis=1)
    relative = ink_widths * row.height / row.digit_width
    value = (
        np.log(np.maximum(proba.max(axis=1), 1e-6))
        + _DETECTOR * np.log(np.maximum(1 - not_a_digit, 1e-6))
        - _WIDTH_COST * np.where(digits != 1, np.maximum(0.0, _NARROW - relative), 0.0)
        - _WIDTH_COST * np.maximum(0.0, relative - _WIDE)
    )
    joining = _joining(upright_sorted, bounds, spans, ink_widths, digits)
    chosen = _best_reading(spans, value, joining, len(bounds), width / row.digit_width)
    if len(chosen) <= 1:
        return [whole]
    scores = predictor.reader.scores(images[chosen], not_a_digit[chosen])  # the detector ran above
    return predictor.results(images[chosen], proba[chosen], scores, len(whole["top"]))


def _around(ink: np.ndarray, part: np.ndarray, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``ink`` and ``part`` cut to the part's box and ``margin`` px around it: the pieces' images
    (``digit_from`` keeps ink within 2 px of a piece) come out the same, for less work."""
    rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
    box = (
        slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
        slice(max(0, cols[0] - margin), cols[-1] + margin + 1),
    )
    return ink[box], part[box]


def _spans(upright_sorted: np.ndarray, bounds: np.ndarray, height: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Runs of pieces (bound i to bound j) worth reading as one digit, and their ink's upright widths in row heights.

    Single pieces always (a 1 may be one), longer runs when their ink is as wide
    as a digit can be, and the whole part; runs without ink never.
    """
    n = len(bounds)
    first = np.searchsorted(upright_sorted, bounds, side="left")  # first pixel at or right of each bound
    spans, widths = [], []
    for i in range(n - 1):
        for j in range(i + 1, n):
            a, b = first[i], first[j] - 1 if j < n - 1 else len(upright_sorted) - 1
            if b < a:
                continue
            w = float(upright_sorted[b] - upright_sorted[a] + 1) / height
            if j == i + 1 or (i == 0 and j == n - 1) or _PIECE[0] <= w <= _PIECE[1]:
                spans.append((i, j))
                widths.append(w)
    return spans, np.array(widths)


def _joining(
    upright_sorted: np.ndarray,
    bounds: np.ndarray,
    spans: list[tuple[int, int]],
    ink_widths: np.ndarray,
    digits: np.ndarray,
) -> np.ndarray:
    """(len(spans),) bool: the runs that may be a pen's stroke joining two digits: inside the part (not at
    either end), read as a 1, at most ``_JOIN_WIDTH`` row heights wide, with ink across both of their cuts."""
    at = np.searchsorted(upright_sorted, np.stack([bounds - 1.0, bounds, bounds + 1.0]))  # (3, n) pixel counts
    crossed = (at[1] > at[0]) & (at[2] > at[1])  # (n,): ink within a column on both sides of the bound
    i, j = np.array(spans).T
    inside = (i > 0) & (j < len(bounds) - 1)
    return inside & crossed[i] & crossed[j] & (ink_widths <= _JOIN_WIDTH) & (digits == 1)


def _piece(part: np.ndarray, ys: np.ndarray, xs: np.ndarray, upright: np.ndarray, a: float, b: float) -> np.ndarray:
    inside = (upright >= a) & (upright < b)
    piece = np.zeros_like(part)
    piece[ys[inside], xs[inside]] = True
    return piece


def _best_reading(
    spans: list[tuple[int, int]], value: np.ndarray, joining: np.ndarray, n: int, expected: float
) -> list[int]:
    """Indices into ``spans`` of the best reading of bounds 0 to n - 1 as consecutive runs, each a digit
    or a joining run (``joining``) left out, never two left out in a row (two neighbouring runs left out
    would drop the digit between two cuts).

    read[k, j]: the best sum of values reading the part up to bound j as k
    digits, the last run read as a digit, less ``_LEAVE_OUT`` for each run left
    out; skipped[k, j]: the same with the last run left out. Each count k then
    pays for its extra digits and for its distance from ``expected`` (the part's
    width in digit widths).
    """
    read = np.full((n, n), -np.inf)
    skipped = np.full((n, n), -np.inf)
    read_back = np.zeros((n, n), int)  # the run read last, for read[k, j]
    skipped_back = np.zeros((n, n), int)  # the run left out last, for skipped[k, j]
    read[0, 0] = 0.0
    for k in range(1, n):
        for s, (i, j) in enumerate(spans):  # by first bound: read[k, i] is final before runs from i are tried
            total = max(read[k - 1, i], skipped[k - 1, i]) + value[s]
            if total > read[k, j]:
                read[k, j], read_back[k, j] = total, s
            if joining[s] and read[k, i] - _LEAVE_OUT > skipped[k, j]:
                skipped[k, j], skipped_back[k, j] = read[k, i] - _LEAVE_OUT, s
    counts = np.arange(n)
    totals = (
        read[:, n - 1]  # a joining run is inside the part: no reading ends with one left out
        - _EXTRA_DIGIT * (counts - 1)
        - _COUNT_COST * np.maximum(0.0, abs(counts - expected) - _COUNT_SLACK)
    )
    totals[0] = -np.inf
    if not np.isfinite(totals).any():
        return []
    k, j, chosen = int(np.argmax(totals)), n - 1, []
    while k > 0:  # back from the last digit read: each run read, and the one left out before it if any
        s = int(read_back[k, j])
        chosen.append(s)
        j, k = spans[s][0], k - 1
        if skipped[k, j] > read[k, j]:
            j = spans[int(skipped_back[k, j])][0]
    return chosen[::-1]
