"""Points, commas, colons and dashes in a row of digits (``mnistlab.reading.marks``): ``read_number`` reads the
digits and says that the number holds a mark it leaves out, instead of a confident 1250 for 12.50."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab import read_number
from mnistlab.reading.marks import find_marks
from mnistlab.testing.hands import MARKS, marked_number_samples, number_samples
from mnistlab.trust.numbers import MARK_BESIDE, doubt_marks

H = 100  # px: the synthetic digits' height
CANVAS = "canvas-black-on-white"


def _row(*extra: tuple[int, int, int, int]) -> np.ndarray:
    """A (160, 420) mask of three 'digits' (rings 100 px tall, 60 wide, stroke 8, 60 px apart) and ``extra``
    boxes (x, y, w, h) of ink."""
    mask = np.zeros((160, 420), bool)
    for x in (20, 140, 260):
        mask[30 : 30 + H, x : x + 60] = True
        mask[38 : 22 + H, x + 8 : x + 52] = False
    for x, y, w, h in extra:
        mask[y : y + h, x : x + w] = True
    return mask


def _marks(mask: np.ndarray) -> list[tuple[float, bool]]:
    found, rest = find_marks(mask, mask, 0.0)
    assert not (rest & ~mask).any()
    return [(round(m.x), m.dash) for m in found]


def test_a_point_a_comma_and_a_dash_between_digits_are_marks():
    assert _marks(_row((105, 116, 10, 10))) == [(110, False)]  # a point on the baseline, in the gap
    assert _marks(_row((106, 112, 9, 30))) == [(110, False)]  # a comma hanging below it
    assert _marks(_row((95, 76, 30, 7))) == [(110, True)]  # a dash at mid-height
    assert _marks(_row((105, 116, 10, 10), (225, 60, 10, 10), (225, 116, 10, 10))) == [(110, False), (230, False)]


def test_a_mark_is_taken_out_of_the_mask_so_that_no_digit_is_read_with_it():
    mask = _row((105, 116, 10, 10), (225, 60, 10, 10), (225, 116, 10, 10))  # a point and a colon
    _, rest = find_marks(mask, mask, 0.0)
    assert np.array_equal(rest, _row())


def test_what_is_no_mark_stays_ink():
    # high in the band (a 5's detached bar, an apostrophe), dust under the pen's width, a piece under another
    # piece (the foot of a hair pen's 1 broken in two), ink in a digit's columns, a blob at mid-height too thick
    # for a dash
    for extra in [
        [(105, 35, 10, 10)],
        [(108, 118, 3, 3)],
        [(106, 70, 8, 40), (106, 116, 8, 12)],
        [(75, 116, 10, 10)],
        [(95, 70, 30, 15)],
    ]:
        mask = _row(*extra)
        found, rest = find_marks(mask, mask, 0.0)
        assert found == [] and np.array_equal(rest, mask), extra


def test_the_digit_before_a_mark_is_doubted_and_one_doubted_already_keeps_its_reason():
    def digit(d: int, reason: str | None = None) -> dict:
        return {"digit": d, "confident": reason is None, "reason": reason}

    by_part = [[digit(1)], [digit(2), digit(3)], [digit(4, "low probability (0.31)")]]
    out = doubt_marks(by_part, [2, 0, 3])
    assert [[d["reason"] for d in part] for part in out] == [
        [MARK_BESIDE],  # a mark before every part: the first digit
        [None, MARK_BESIDE],  # after the second part: its last digit
        ["low probability (0.31)"],  # after the last part, doubted for its own reason already
    ]
    assert by_part[1][1]["confident"]  # the caller's answers are not changed


@pytest.mark.parametrize("mark", MARKS)
def test_a_number_with_a_mark_is_not_read_confidently_without_it(reader, mark):
    # Before marks were looked for, such rows came back as a confident 1250 for 12.50, 405 for 40,5, 1245 or
    # 12245 for 12:45, 37 or 327 for 3-7, 25 or 225 for -25 (the dash read as a 1 or a 2), in most fonts and pens.
    rng = np.random.default_rng(5)
    rows = [s for source in ("pen", "fonts") for s in marked_number_samples(source, 4, rng, mark=mark, surface=CANVAS)]
    said = [s.label for s in rows if _says_mark(read_number(s.data))]
    assert len(said) >= 4, (mark, said)  # of 8; 4-8 a mark today


def test_rows_of_digits_alone_are_not_said_to_hold_a_mark(reader):
    for source in ("pen", "fonts"):
        for s in number_samples(source, 12, np.random.default_rng(41)):
            assert not _says_mark(read_number(s.data)), (source, s.label, s.surface)


def _says_mark(answer: dict) -> bool:
    """Whether ``read_number``'s answer doubts the number for a mark it leaves out."""
    return not answer["confident"] and any(d["reason"] == MARK_BESIDE for d in answer["digits"])
