"""Rows of touching, slanted handwritten digits read by ``read_number`` (``mnistlab.trust.numbers``)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mnistlab import read_number
from mnistlab.errors import ImageError
from mnistlab.reading.decode import reduced_side, to_grey
from mnistlab.reading.segment import (
    ROW_SHORT_SIDE,
    _group_components,
    _labelled,
    find_digits,
    row_slant,
    upright_columns,
    writing_lines,
)
from mnistlab.reading.steps import digit_from
from mnistlab.testing import make_dashes_strip
from mnistlab.testing.fonts import FONT_PACKAGES, FONTS, available_fonts, font_text
from mnistlab.testing.hands import number_samples
from mnistlab.trust.numbers import (
    MARK_BESIDE,
    ROW_IMAGES,
    ROWS,
    TOO_BUSY,
    Budget,
    _best_reading,
    keep_marks,
    read_part,
    row_of,
)
from mnistlab.trust.predict import load_predictor, surer_row

pytestmark = pytest.mark.usefixtures("reader")  # tests/conftest.py: the shipped reader, or skipped


def _reads(source: str, seeds: tuple[int, ...]) -> list[tuple[str, str]]:
    """(label, what read_number read) for six rows per seed, drawn on a clean canvas."""
    out = []
    for seed in seeds:
        for s in number_samples(source, 6, np.random.default_rng(seed), surface="canvas-black-on-white"):
            out.append((s.label, read_number(s.data)["number"]))
    return out


def test_touching_slanted_pen_digits_are_counted_and_read():
    # Among these 24 rows, 11 hold digits that touch their neighbours (93029, 9026,
    # 50903, 21575, 6042, 229836, ...): read as one part each, they lost digits
    # (13 of 24 exact, "93029" read as "869"). Cut along the slant, 20-22 are exact
    # and 23-24 have the right count, depending on the reader (the shipped one cuts
    # the tail of the 2 in "93029" off as a digit of its own).
    reads = _reads("pen", (22, 26, 30, 32))
    exact = sum(label == got for label, got in reads)
    counted = sum(len(label) == len(got) for label, got in reads)
    assert exact >= 20 and counted >= 23, reads


def test_a_pen_stroke_joining_two_digits_is_not_read_as_a_1():
    # Hands that do not lift the pen between digits join them with a thin stroke, which
    # the classifier reads as a 1: these rows were read 9811, 872121, 1502138 and
    # 1173562 while every thin run read as a 1 was a digit.
    rows = {(59, 1): "981", (62, 0): "87221", (95, 3): "150238", (101, 0): "173562"}
    for (seed, i), label in rows.items():
        s = number_samples("pen", 6, np.random.default_rng(seed), surface="canvas-black-on-white")[i]
        assert s.label == label
        assert read_number(s.data)["number"] == label


def test_a_joining_run_that_reads_poorly_as_a_1_is_left_out():
    # Bounds 0-3: a digit, a thin run read as a 1 with ink across both its cuts, a digit;
    # the part 2.5 digit widths wide (two and three digits cost the same).
    spans = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    value = np.array([-0.1, -4.0, -6.0, -0.6, -4.0, -0.1])
    joining = np.array([False, False, False, True, False, False])
    assert [spans[s] for s in _best_reading(spans, value, joining, 4, 2.5)] == [(0, 1), (2, 3)]
    # Not joining: three digits, the run among them.
    assert [spans[s] for s in _best_reading(spans, value, np.zeros(6, bool), 4, 2.5)] == [(0, 1), (1, 2), (2, 3)]
    # Read well as a 1 (-0.2): left out where the part's width asks for two or three digits alike, read
    # where it asks for a third (3.5 digit widths).
    value[3] = -0.2
    assert [spans[s] for s in _best_reading(spans, value, joining, 4, 2.5)] == [(0, 1), (2, 3)]
    assert [spans[s] for s in _best_reading(spans, value, joining, 4, 3.5)] == [(0, 1), (1, 2), (2, 3)]


def test_two_neighbouring_joining_runs_are_never_both_left_out():
    # Bounds 0-4: a digit, two thin runs read poorly as 1s with ink across their cuts (together the
    # middle digit, cut in two, which reads poorly too), a digit. Leaving both runs out would drop
    # that digit and cost less than reading it; it is read.
    spans = [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4)]
    value = np.array([-0.1, -3.0, -3.0, -4.0, -0.1])
    joining = np.array([False, True, True, False, False])
    chosen = [spans[s] for s in _best_reading(spans, value, joining, 5, 3.0)]
    assert chosen == [(0, 1), (1, 3), (3, 4)]


@pytest.mark.skipif(len(available_fonts()) < len(FONTS), reason=f"apt-get install {FONT_PACKAGES}")
def test_wide_font_digits_are_not_cut_apart():
    # Rows with wide 0s and 8s (882, 877010, 009602, 86222, 6846 ...), some touching:
    # a confident digit of a digit's width stays one digit.
    reads = _reads("fonts", (26, 28, 31, 33))
    assert all(label == got for label, got in reads), [r for r in reads if r[0] != r[1]]


@pytest.mark.skipif(not {"dkg", "humor-sans"} <= set(available_fonts()), reason=f"apt-get install {FONT_PACKAGES}")
@pytest.mark.parametrize("font", ["dkg", "humor-sans"])
def test_a_tight_crop_of_a_long_number_is_read_whole(font):
    # Reduced to the work size as any photo is, crops of 24 to 40 digits kept them 10-20 px tall: in dkg
    # 24 digits read as 23 (confidently), 32 and 40 as none at all, every digit dropped as a speck (under
    # 3% of the strip's length); in Humor Sans 24 and 32 as none. A row keeps ROW_SHORT_SIDE px of its height.
    for n in (24, 32, 40):
        rng = np.random.default_rng(n)
        text = "".join(str(d) for d in rng.integers(0, 10, n))
        ink = np.pad(font_text(text, font, rng, 40, gap=(0.15, 0.3)), 6)
        if ink.shape[1] > 20 * ink.shape[0]:
            continue  # longer than any strip an image may be
        buf = io.BytesIO()
        Image.fromarray((255 * (1 - ink)).astype(np.uint8)).save(buf, "PNG")
        assert read_number(buf.getvalue())["number"] == text, (font, n)


@pytest.mark.skipif("dkg" not in available_fonts(), reason=f"apt-get install {FONT_PACKAGES}")
def test_a_number_photographed_from_afar_keeps_its_small_digits():
    # Digits 180 px tall in a 4000 x 3000 photo are 14 px at the work size, and this font's 0 is smaller than
    # its other digits: 8 x 8 px, under 3% of the photo's longer side, it went as a speck, and 20417 and 94062
    # read as a confident 2417 and 9462.
    for seed, text in enumerate(("20417", "5839", "716", "94062")):
        ink = font_text(text, "dkg", np.random.default_rng(seed), 180, gap=(0.1, 0.3))
        photo = np.full((3000, 4000), 235, np.uint8)
        photo[1200 : 1200 + ink.shape[0], 1500 : 1500 + ink.shape[1]] = (235 - 200 * ink).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=90)
        assert read_number(buf.getvalue())["number"] == text


def test_a_strip_is_reduced_less_so_that_its_height_stays_readable():
    strip = np.full((100, 1500), 255, np.uint8)  # a crop 15 times as long as high
    assert to_grey(strip).shape == (21, 320)  # what a single digit's reading does with it
    assert reduced_side(1500, 100, min_short_side=ROW_SHORT_SIDE) == 1280  # 96 px high would be 1,440 long
    assert to_grey(strip, min_short_side=ROW_SHORT_SIDE).shape == (85, 1280)
    photo = np.full((800, 1000), 255, np.uint8)
    assert to_grey(photo, min_short_side=ROW_SHORT_SIDE).shape == to_grey(photo).shape == (256, 320)
    assert to_grey(strip[:, :600], min_short_side=ROW_SHORT_SIDE).shape == (96, 576)


def test_components_are_numbered_as_scipy_numbered_them():
    # Grouping breaks ties by label, as it did with scipy's ndimage.label: OpenCV's own numbering would
    # change which of two equal pieces comes first.
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(50):
        blobs = rng.random((int(rng.integers(10, 80)), int(rng.integers(10, 200)))) < rng.uniform(0.05, 0.5)
        labels, n = _labelled(blobs)
        theirs, m = ndimage.label(blobs, structure=np.ones((3, 3), bool))
        assert n == m
        np.testing.assert_array_equal(labels, theirs)
    assert _labelled(np.zeros((5, 5), bool))[1] == 0


def test_row_slant_measures_the_lean_of_the_strokes():
    row = np.zeros((60, 120), bool)
    for x0 in (20, 50, 80):  # three strokes leaning right: 1 column right per 2 rows up
        for y in range(10, 50):
            row[y, x0 + (50 - y) // 2 : x0 + (50 - y) // 2 + 3] = True
    assert row_slant(row) == pytest.approx(-0.5, abs=0.05)
    assert row_slant(row[:, ::-1]) == pytest.approx(0.5, abs=0.05)
    assert row_slant(np.zeros((10, 10), bool)) == 0.0
    _, _, upright = upright_columns(row[:, :45], row_slant(row))
    assert np.ptp(upright) < 5  # sheared upright, a leaning stroke is a few columns wide


def test_read_number_keeps_its_keys_on_touching_digits():
    s = number_samples("pen", 6, np.random.default_rng(22), surface="canvas-black-on-white")[2]  # 93029, touching
    result = read_number(s.data)
    assert set(result) == {"number", "digits", "confident"}
    assert len(result["digits"]) == len(result["number"])
    for d in result["digits"]:
        assert {"digit", "probability", "top", "confident", "reason", "mnist_image"} == set(d)
        assert len(d["top"]) == 3 and d["mnist_image"].shape == (28, 28)


def test_a_doubted_row_on_ruled_paper_is_read_again_with_a_second_look():
    # Hollow digits in a thin pen on ruled paper: the first look finds them in pieces among the rules'
    # dashes and reads 735882, doubted. The second look (as ``predict_image``'s) reads the row right.
    s = number_samples("pen", 1, np.random.default_rng(300), surface="paper-ruled")[0]
    assert (s.label, s.style) == ("73926", "hollow")
    result = read_number(s.data)
    assert (result["number"], result["confident"]) == ("73926", True)
    assert read_number(io.BytesIO(s.data))["number"] == "73926"  # a file object is read again from its start


def _row(number: str, confident: list[bool], probability: float = 0.9) -> dict:
    digits = [{"digit": int(c), "probability": probability, "confident": k} for c, k in zip(number, confident)]
    return {"number": number, "digits": digits, "confident": all(confident)}


def test_a_second_reading_stands_when_sure_and_keeps_the_doubt_otherwise():
    first = _row("1483", [True, False, True, False])
    # Every digit confident at 0.8 and more: the second reading stands.
    assert surer_row(first, _row("74836", [True] * 5)) == _row("74836", [True] * 5)
    # Confident at under 0.8: more of its digits are confident, so its digits stand, still doubted.
    surer = surer_row(first, _row("74836", [True] * 5, probability=0.7))
    assert (surer["number"], surer["confident"]) == ("74836", False)
    # Fewer confident digits than the first's: the first stands.
    assert surer_row(first, _row("7483", [False, True, False, False])) is first


def test_a_mark_found_by_the_first_look_keeps_its_digit_doubted():
    # In 31,6 (a pen's JPEG) the first look found the comma and doubted the 1; the second found no mark, every
    # digit of it confident, and it stood: 316, confident, though README says the digit before a comma is doubted.
    first = _row("316", [True, False, True])
    first["digits"][1]["reason"] = MARK_BESIDE
    second = _row("316", [True, True, True])
    kept = keep_marks(first, second)
    assert [d["confident"] for d in kept["digits"]] == [True, False, True] and not kept["confident"]
    assert kept["digits"][1]["reason"] == MARK_BESIDE
    # Read as another count of digits, the first look's parts were not the number's: the later reading stands.
    assert keep_marks(first, _row("3160", [True] * 4)) == _row("3160", [True] * 4)
    # No mark found: the later reading is left as it is.
    assert keep_marks(_row("316", [True, False, True]), second) is second


def _strip(*rows: tuple[int, int, int, int]) -> np.ndarray:
    """Ink (1.0) on paper (0) in the boxes (top, bottom, left, right)."""
    ink = np.zeros((200, 400), np.float32)
    for top, bottom, left, right in rows:
        ink[top:bottom, left:right] = 1.0
    return ink


def test_lines_of_writing_are_counted_and_an_underline_or_a_broken_stroke_is_none():
    row, below = (20, 80, 10, 300), (120, 170, 10, 250)
    assert writing_lines(_strip(row)) == 1
    assert writing_lines(_strip(row, below)) == 2
    assert writing_lines(_strip(row, (95, 100, 10, 300))) == 1  # an underline: too low for a line
    assert writing_lines(_strip((20, 60, 50, 58), (70, 110, 52, 60))) == 0  # a 1 broken in two: too narrow
    assert writing_lines(_strip()) == 0


def test_two_rows_one_above_the_other_are_doubted():
    # Stacked rows' digits were grouped as one digit's pieces, and such pages were read as one confident number:
    # "188" over "556843" as 556843, "999046" over "448" (optdigits) as 4393046.
    for source, seed in (("pen", 3), ("optdigits", 4)):
        a, b = (
            np.asarray(Image.open(io.BytesIO(s.data)).convert("L"))
            for s in number_samples(source, 6, np.random.default_rng(seed), surface="canvas-black-on-white")[:2]
        )
        width = max(a.shape[1], b.shape[1])
        page = np.vstack([np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=255) for x in (a, b)])
        answer = read_number(page)
        assert not answer["confident"], (source, answer["number"])
        assert ROWS in [d.get("reason") for d in answer["digits"]], answer["digits"]


def _slanted_stroke(mask: np.ndarray, x0: int, rows: range, slant: float = -0.4) -> None:
    """A 3 px stroke leaning right (``slant`` columns per row downwards) through column ``x0`` at row 50."""
    for y in rows:
        x = x0 + round(slant * (y - 50))
        mask[y, x : x + 3] = True


def _strokes_with_a_broken_one(offset: int) -> np.ndarray:
    """Three leaning strokes, the middle one broken across its middle, its top piece ``offset`` columns
    right of the line of its foot (a hair pen's 1 in two pieces)."""
    mask = np.zeros((100, 200), bool)
    _slanted_stroke(mask, 40, range(20, 81))
    _slanted_stroke(mask, 100 + offset, range(20, 48))
    _slanted_stroke(mask, 100, range(53, 81))
    _slanted_stroke(mask, 160, range(20, 81))
    return mask


@pytest.mark.parametrize("offset", [0, 6])
def test_a_slanted_stroke_broken_in_two_is_one_digit(offset):
    # In line (0): sheared upright about their own middles, the pieces' columns stood 13 apart (10 between
    # them) and read as two 1s; about the row's middle they share their columns. Off the line (6): apart even
    # so, but one above the other and each too short to be a digit, they are joined as stacked pieces.
    mask = _strokes_with_a_broken_one(offset)
    groups = _group_components(mask, row_slant(mask))
    assert [int(g.sum()) for g in groups] == [int(mask[:, a:b].sum()) for a, b in ((0, 70), (70, 130), (130, 200))]


def test_two_whole_strokes_side_by_side_stay_two_digits():
    mask = np.zeros((100, 200), bool)
    _slanted_stroke(mask, 90, range(20, 81))
    _slanted_stroke(mask, 105, range(20, 81))
    assert len(_group_components(mask, row_slant(mask))) == 2


@pytest.mark.parametrize(
    ("seed", "index", "label", "was"),
    [
        (41, 6, "645216", "64526"),  # a hair pen's 1 leaning into the 6 beside it
        (43, 50, "1374", "11374"),  # a hair pen's 1 broken across its middle
        (47, 49, "22290", "222520"),  # a marker's 9 in two pieces on squared paper
    ],
)
def test_pieces_of_a_slanted_digit_are_grouped_by_the_row_s_lean(seed, index, label, was):
    # Rows from dev seeds (``number_samples("pen", ...)``, as bench_hands draws them) that were read as ``was``.
    s = number_samples("pen", index + 1, np.random.default_rng(seed))[index]
    assert s.label == label
    assert read_number(s.data)["number"] == label, f"read {was} before the pieces were grouped so"


def test_a_row_of_more_marks_than_a_number_makes_is_refused_in_one_sentence():
    """A strip of dashes came out as 525 parts, each read and many re-read: 19 s of CPU for one request of 679
    bytes. More parts than ``MAX_ROW_PARTS`` are refused before any is read."""
    with pytest.raises(ImageError, match=r"^The image holds \d{3} separate marks in one row, more than a number of up "
                       r"to 20 digits makes \(80\); crop it to the number") as caught:  # fmt: skip
        read_number(make_dashes_strip())
    assert caught.value.http_status == 422


def test_a_part_re_read_beyond_the_look_s_budget_stays_whole_and_doubted():
    """Re-reading a wide part costs an image a run of its pieces; past the look's ``Budget`` the part is left as
    read once, not confident, and says why (rows of 14-20 real digits took at most 876 of the 1,200 images)."""
    s = number_samples("pen", 6, np.random.default_rng(22), surface="canvas-black-on-white")[2]  # 93029, touching
    predictor = load_predictor(None)
    ink, parts, slant = find_digits(s.data)[:3]
    wholes = predictor.describe(np.stack([digit_from(ink, part) for part in parts]), 3)
    row = row_of(parts, wholes, slant)
    read = [read_part(predictor, ink, p, w, row, Budget()) for p, w in zip(parts, wholes)]
    assert "".join(str(d["digit"]) for digits in read for d in digits) == "93029"
    split = next(i for i, digits in enumerate(read) if len(digits) > 1)  # the part of two touching digits
    budget = Budget(left=0)  # nothing left: any re-reading is over it
    (kept,) = read_part(predictor, ink, parts[split], wholes[split], row, budget)
    assert kept["confident"] is False and kept["reason"] == TOO_BUSY and kept["digit"] == wholes[split]["digit"]
    assert budget.left == 0 and Budget().left == ROW_IMAGES


def test_a_file_open_for_writing_alone_is_said_to_be_so(tmp_path):
    """A photo written through a file and that file given on (``open(p, "wb")``, ``"ab"``) was 'the uploaded file
    is truncated or corrupt (read); send the complete file again', though the file was whole; now it says the file
    is not open for reading, and how to open it."""
    photo = tmp_path / "row.png"
    data = number_samples("pen", 1, np.random.default_rng(22), surface="canvas-black-on-white")[0].data
    for mode in ("wb", "ab"):
        with open(photo, mode) as f:
            f.write(data)
            f.flush()
            with pytest.raises(ImageError, match=r"^the uploaded file is not open for reading; open it in binary"):
                read_number(f)
    assert read_number(photo)["digits"]  # the file itself is whole
