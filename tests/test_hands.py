"""Test images from hands MNIST never saw (``mnistlab.testing.hands``), and the reader on them per source."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from mnistlab import predict_image, read_number, to_mnist
from mnistlab.testing.fonts import FONT_PACKAGES, FONTS, available_fonts
from mnistlab.testing.hands import (
    DIGIT_SOURCES,
    LETTERS,
    MARKS,
    NON_DIGIT_SOURCES,
    SURFACES,
    Sample,
    digit_samples,
    marked_number_samples,
    non_digit_samples,
    number_samples,
)
from mnistlab.trust.predict import load_predictor

needs_fonts = pytest.mark.skipif(
    len(available_fonts()) < len(FONTS),
    reason=f"apt-get install {FONT_PACKAGES}",
)


def sources() -> list:
    return [pytest.param(s, marks=needs_fonts) if s == "fonts" else s for s in DIGIT_SOURCES]


def available_sources() -> tuple[str, ...]:
    return tuple(s for s in DIGIT_SOURCES if s != "fonts" or len(available_fonts()) == len(FONTS))


def decode(sample: Sample) -> Image.Image:
    return Image.open(io.BytesIO(sample.data))


def ink_mask(sample: Sample, level: int = 128) -> np.ndarray:
    """Dark ink on a white canvas export -> boolean mask (H, W) of pixels darker than ``level``."""
    return np.asarray(decode(sample).convert("L")) < level


# --- the generators ---------------------------------------------------------------


@pytest.mark.parametrize("source", sources())
def test_digits_are_deterministic_and_labelled(source):
    a = digit_samples(source, 10, np.random.default_rng(7))
    b = digit_samples(source, 10, np.random.default_rng(7))
    assert a == b
    assert sorted(s.label for s in a) == list(range(10))  # every digit once in ten
    assert {s.source for s in a} == {source}
    assert digit_samples(source, 10, np.random.default_rng(8)) != a


@pytest.mark.parametrize("source", sources())
@pytest.mark.parametrize("surface", SURFACES)
def test_every_surface_decodes_in_its_format(source, surface):
    (sample,) = digit_samples(source, 1, np.random.default_rng(1), surface=surface)
    image = decode(sample)
    assert sample.surface == surface
    assert image.format == ("JPEG" if surface.startswith("paper") else "PNG")
    assert image.mode == ("RGBA" if surface == "canvas-transparent" else "RGB")
    assert min(image.size) >= 60
    assert to_mnist(sample.data).max() > 0  # the whole reading path finds ink


@pytest.mark.parametrize("source", sources())
def test_numbers_are_rows_of_three_to_six_digits(source):
    a = number_samples(source, 4, np.random.default_rng(2))
    assert a == number_samples(source, 4, np.random.default_rng(2))
    for s in a:
        assert s.label.isdigit() and 3 <= len(s.label) <= 6
        width, height = decode(s).size
        assert width > height  # a row, not a column


@pytest.mark.parametrize("source", [pytest.param("fonts", marks=needs_fonts), "pen"])
def test_marked_numbers_hold_their_mark_in_the_label(source):
    a = marked_number_samples(source, 10, np.random.default_rng(3))
    assert a == marked_number_samples(source, 10, np.random.default_rng(3))
    assert all(sum(not c.isdigit() for c in s.label) == 1 and s.source == source for s in a)
    colons = marked_number_samples(source, 2, np.random.default_rng(3), mark="colon")
    assert all(len(s.label) == 5 and s.label[2] == ":" for s in colons)
    assert set(MARKS) == {"point", "comma", "colon", "dash", "minus"}
    with pytest.raises(ValueError, match="unknown source 'optdigits'"):
        marked_number_samples("optdigits", 1, np.random.default_rng(0))


@needs_fonts
@pytest.mark.parametrize("kind", NON_DIGIT_SOURCES)
def test_non_digits_are_deterministic_and_decodable(kind):
    a = non_digit_samples(kind, 3, np.random.default_rng(5))
    assert a == non_digit_samples(kind, 3, np.random.default_rng(5))
    for s in a:
        assert decode(s).size[0] >= 60
        assert isinstance(s.label, str)


def test_letters_leave_out_those_that_pass_for_digits():
    assert not set(LETTERS) & set("OoQDIlijJZzSsbGBgq")
    rng = np.random.default_rng(0)
    labels = [s.label for kind in ("pen-letters", "font-letters") for s in non_digit_samples(kind, 20, rng)]
    assert set(labels) <= set(LETTERS)


def test_test_fonts_are_not_the_training_fonts():
    paths = " ".join(FONTS.values()).lower()
    for training in ("comic", "dancing", "typoscript", "matplotlib", "dejavu"):
        assert training not in paths


def test_unknown_names_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown source"):
        digit_samples("mnist", 1, rng)
    with pytest.raises(ValueError, match="unknown kind"):
        non_digit_samples("cats", 1, rng)
    with pytest.raises(ValueError, match="unknown surface"):
        digit_samples("pen", 1, rng, surface="wall")
    with pytest.raises(ValueError, match="unknown pen style"):
        digit_samples("pen", 1, rng, style="crayon")
    with pytest.raises(ValueError, match="unknown font"):
        digit_samples("fonts", 1, rng, style="comic-neue")


# --- they differ from MNIST where they should -------------------------------------------


def test_hair_pen_strokes_are_thin_and_marker_strokes_thick():
    rng = np.random.default_rng(3)
    hair = digit_samples("pen", 10, rng, surface="canvas-black-on-white", style="hair")
    marker = digit_samples("pen", 10, rng, surface="canvas-black-on-white", style="marker")
    for s in hair:  # a 1-2 px line: one erosion leaves (almost) nothing
        mask = ink_mask(s)
        assert mask.sum() > 0 and ndimage.binary_erosion(mask).sum() < 0.15 * mask.sum()
    for s in marker:
        mask = ink_mask(s)
        assert ndimage.binary_erosion(mask, iterations=2).sum() > 0.4 * mask.sum()


def test_hollow_strokes_enclose_paper():
    for s in digit_samples("pen", 10, np.random.default_rng(4), surface="canvas-black-on-white", style="hollow"):
        mask = ink_mask(s, 230)  # any ink: a light pen's outline has no gaps at this level
        assert ndimage.binary_fill_holes(mask).sum() > 1.5 * mask.sum(), s.label


def test_cursive_rows_join_their_digits():
    """A cursive hand joins digits where a pen would: fewer pieces of ink than digits in a row."""
    pieces, digits = 0, 0
    for s in number_samples("pen", 6, np.random.default_rng(6), surface="canvas-black-on-white", style="cursive"):
        assert s.style == "cursive"
        pieces += ndimage.label(ink_mask(s), structure=np.ones((3, 3)))[1]
        digits += len(s.label)
    assert pieces < digits


def test_optdigits_are_smooth_not_blocky():
    """Blown up from 8x8 with a spline and a threshold: crisp edges, no 8x8 staircase."""
    for s in digit_samples("optdigits", 10, np.random.default_rng(5), surface="canvas-black-on-white"):
        grey = np.asarray(decode(s).convert("L"), float) / 255
        ink = grey < 0.9
        edge = ink & (grey > 0.1)
        assert edge.sum() < 0.25 * ink.sum()
        rows = np.flatnonzero(ink.any(1))
        assert rows[-1] - rows[0] >= 80  # canvas size, not 8 px


def _line_depth(data: bytes, axis: int) -> float:
    """How far the darkest row (axis 1: column) of a central strip dips below its smooth trend, grey levels."""
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), float)
    grey = grey if axis == 1 else grey.T
    w = grey.shape[1]
    strip = grey[:, int(0.45 * w) : int(0.55 * w)].mean(1)
    trend = ndimage.median_filter(strip, size=31, mode="nearest")
    return float(np.sort(trend - strip)[-2])


def test_ruled_and_squared_pages_show_their_lines():
    def depth(surface, axis):
        pages = non_digit_samples("empty-pages", 8, np.random.default_rng(3), surface=surface)
        return np.median([_line_depth(p.data, axis) for p in pages])

    plain_rows, plain_cols = depth("paper-plain", 1), depth("paper-plain", 0)
    assert depth("paper-ruled", 1) > 2 * plain_rows
    assert depth("paper-squared", 1) > 2 * plain_rows and depth("paper-squared", 0) > 2 * plain_cols


# --- the reader on them, per source --------------------------------------------------
# Floors are what the reader meets today, with room; the target tests hold issue 12's
# targets for other hands: >= 98% of digits right, <= 2% flagged, <= 0.5% confident
# and wrong; numbers >= 95% exact; every non-digit kind >= 95% flagged. On sets this
# small a target means every image (30 digits, 8 numbers, 10 non-digits), so these
# tests guard the sources that read perfectly here; benchmarks/bench_hands.py measures
# the rates. Where the shipped reader misses a target on these images, its test is a
# strict xfail: it fails once the target is met, and the mark must come off.

N_DIGITS, N_NUMBERS, N_NON_DIGITS = 30, 8, 10
MISSED = {  # what the shipped reader gets wrong on these images (seeds 12, 13, 14)
    "digits": {"pen": "1 of 30 flagged", "optdigits": "2 of 30 flagged, 1 confident and wrong"},
    "numbers": {"optdigits": "7 of 8 exact"},
    "non-digits": {"symbols": "9 of 10 flagged", "doodles": "9 of 10 flagged"},
}


def targets(case: str, params) -> list:
    """``params`` for a target test, those the shipped reader misses marked as strict xfails."""
    missed = MISSED[case]
    return [
        pytest.param(
            p, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"target not met yet: {missed[p]}")
        )
        if p in missed
        else p
        for p in params
    ]


@pytest.fixture(scope="module")
def digit_reads(reader):
    """Per source: (right, flagged, confident and wrong) booleans over N_DIGITS images."""
    out = {}
    for source in available_sources():
        results = []
        for s in digit_samples(source, N_DIGITS, np.random.default_rng(12)):
            r = predict_image(s.data, reader, top=1)
            results.append((r["digit"] == s.label, not r["confident"], r["confident"] and r["digit"] != s.label))
        out[source] = np.array(results)
    return out


# Floors the shipped reader meets on these images, with room for the spread of
# 30 images: (right at least, flagged at most) per source, flagged at least per kind.
FLOORS = {"pen": (0.8, 0.2), "fonts": (0.9, 0.1), "optdigits": (0.65, 0.3)}
FLAG_FLOORS = {
    "pen-letters": 0.7,
    "font-letters": 0.6,
    "words": 0.9,
    "symbols": 0.5,
    "doodles": 0.5,
    "fashion": 0.7,
    "empty-pages": 0.9,
    "digit-pairs": 0.8,
}


@pytest.mark.parametrize("source", DIGIT_SOURCES)
def test_digits_by_other_hands_are_mostly_read(digit_reads, source):
    if source not in digit_reads:
        pytest.skip("handwriting fonts not installed")
    right, flagged, _ = digit_reads[source].mean(0)
    assert right >= FLOORS[source][0] and flagged <= FLOORS[source][1]


@pytest.mark.parametrize("source", targets("digits", DIGIT_SOURCES))
def test_digits_by_other_hands_meet_the_target(digit_reads, source):
    if source not in digit_reads:
        pytest.skip("handwriting fonts not installed")
    right, flagged, confident_wrong = digit_reads[source].mean(0)
    assert right >= 0.98 and flagged <= 0.02 and confident_wrong <= 0.005


@pytest.mark.parametrize("source", targets("numbers", DIGIT_SOURCES))
def test_numbers_by_other_hands_meet_the_target(reader, source):
    if source not in available_sources():
        pytest.skip("handwriting fonts not installed")
    samples = number_samples(source, N_NUMBERS, np.random.default_rng(13))
    exact = np.mean([read_number(s.data, reader)["number"] == s.label for s in samples])
    assert exact >= 0.95


@pytest.fixture(scope="module")
def non_digit_flags(reader):
    """Per non-digit kind: the share of N_NON_DIGITS images flagged "not confident"."""
    flags = {}
    for kind in NON_DIGIT_SOURCES:
        samples = non_digit_samples(kind, N_NON_DIGITS, np.random.default_rng(14))
        flags[kind] = float(np.mean([not predict_image(s.data, reader, top=1)["confident"] for s in samples]))
    return flags


@needs_fonts
@pytest.mark.parametrize("kind", NON_DIGIT_SOURCES)
def test_non_digits_are_mostly_flagged(non_digit_flags, kind):
    assert non_digit_flags[kind] >= FLAG_FLOORS[kind]


@needs_fonts
@pytest.mark.parametrize("kind", targets("non-digits", NON_DIGIT_SOURCES))
def test_non_digits_meet_the_target(non_digit_flags, kind):
    assert non_digit_flags[kind] >= 0.95


# --- a 1 with a flag, a 7 with its bar ----------------------------------------------------------


def canvas_png(*strokes: list[tuple[float, float]], width: int) -> bytes:
    """A 280 px canvas export (black on white) of pen strokes, each a list of (x, y) points."""
    im = Image.new("L", (280, 280), 255)
    for points in strokes:
        ImageDraw.Draw(im).line(points, fill=0, width=width, joint="curve")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("width", [6, 14, 22])
@pytest.mark.parametrize("lean", [0, 15])
@pytest.mark.parametrize("angle", [40, 50])
def test_a_one_with_a_flag_is_read_as_a_one(reader, angle, lean, width):
    # MNIST's writers seldom flagged a 1: before the classifier was taught flagged 1s, 6 of these 12 were
    # a 7 or doubted. The flag is 70 px long, ``angle`` degrees below the horizontal.
    top, a = (150 + lean, 40), np.radians(angle)
    flag = (top[0] - 70 * np.cos(a), top[1] + 70 * np.sin(a))
    answer = predict_image(canvas_png([top, (150 - lean, 240)], [top, flag], width=width), reader)
    assert (answer["digit"], answer["confident"]) == (1, True)


@pytest.mark.parametrize("width", [6, 14, 22])
@pytest.mark.parametrize("tilt", [0, 8, 15])
def test_a_seven_stays_a_seven(reader, tilt, width):
    bar = [(80, 40), (190, 40 + 110 * np.tan(np.radians(tilt)))]  # the bar, tilted down to the right
    answer = predict_image(canvas_png(bar + [(120, 240)], width=width), reader)
    assert (answer["digit"], answer["confident"]) == (7, True)


# --- a doubted photo's second look --------------------------------------------------------------


def first_look(data: bytes) -> dict:
    """The answer ``predict_image`` gives before any second look."""
    return load_predictor().describe(to_mnist(data)[None], 3)[0]


@pytest.fixture(scope="module")
def faint_two(reader) -> Sample:
    """A hair-thin pen's 2 on plain paper that the first look reads as a doubted 2 (probability 0.24). (Number 39
    of these, left in four pieces at the usual floor, reads at the first look since pieces that hold a quarter
    of the largest one's ink are kept.)"""
    sample = digit_samples("pen", 60, np.random.default_rng(30), surface="paper-plain")[54]
    assert (sample.label, sample.style) == (2, "hair")
    return sample


def test_a_doubted_photo_gets_a_second_look(faint_two):
    assert not first_look(faint_two.data)["confident"]
    answer = predict_image(faint_two.data)
    assert answer["confident"] and answer["digit"] == 2
    again = predict_image(io.BytesIO(faint_two.data))  # a file object is read again from where it started
    assert (again["digit"], again["confident"], again["probability"]) == (2, True, answer["probability"])


def test_a_second_look_reads_a_hair_pen_on_ruled_paper(reader):
    # At the usual floor this 9 comes out in dots among the rules' dashes (a doubted 3). The second look
    # averages the ink along its strokes, and finds the rules where the paper's grain hid them.
    nine = digit_samples("pen", 30, np.random.default_rng(202), surface="paper-ruled", style="hair")[8]
    assert nine.label == 9
    first = first_look(nine.data)
    assert not first["confident"] and first["digit"] != 9
    answer = predict_image(nine.data)
    assert answer["confident"] and answer["digit"] == 9


@pytest.fixture(scope="module")
def hair_seven(reader) -> Sample:
    """A hair-thin pen's 7 on squared paper whose second look reads a doubted 1."""
    sample = digit_samples("pen", 30, np.random.default_rng(303), surface="paper-squared", style="hair")[22]
    assert sample.label == 7
    return sample


def test_a_third_look_reads_a_hair_pen_the_second_misses(hair_seven):
    # Reduced to the work size, this 7's strokes are about as faint as the paper's noise: the first look
    # is doubted, and the second reads a doubted 1. Its mask found at twice the size, it reads a sure 7.
    assert not first_look(hair_seven.data)["confident"]
    second = load_predictor().describe(to_mnist(hair_seven.data, faint=True)[None], 1)[0]
    assert not (second["confident"] and second["digit"] == 7)
    answer = predict_image(hair_seven.data)
    assert answer["confident"] and answer["digit"] == 7


def test_a_doubted_row_gets_a_third_look(reader):
    # A hair-thin pen's 77506 on squared paper: its strokes come out in pieces at the first and second
    # looks (read 111711725110161, doubted); with its mask found at twice the work size, it reads right.
    row = number_samples("pen", 12, np.random.default_rng(505), surface="paper-squared", style="hair")[7]
    assert row.label == "77506"
    answer = read_number(row.data)
    assert answer["number"] == "77506" and answer["confident"]


def test_a_second_look_adds_no_ink_the_first_never_saw(reader):
    # An empty squared page: the first look finds no ink; ink averaged along lines brings out a grid line's
    # remnant, which read as a sure 1 (0.90) before the second look kept to the first look's ink.
    page = non_digit_samples("empty-pages", 138, np.random.default_rng(101))[137]
    assert page.surface == "paper-squared"
    assert not to_mnist(page.data).any()
    assert not to_mnist(page.data, faint=True).any()
    assert not predict_image(page.data)["confident"]


def test_a_second_look_must_be_surer_than_a_first(reader):
    # A smiley on squared paper: the second look reads a confident 0 at 0.79. A second look's answer
    # stands only at 0.8 and more (and far from the not-a-digit detector's threshold).
    smiley = non_digit_samples("doodles", 60, np.random.default_rng(41))[59]
    assert smiley.label == "doodle:smiley"
    second = load_predictor().describe(to_mnist(smiley.data, faint=True)[None], 1)[0]
    assert second["confident"] and 0.7 < second["probability"] < 0.8
    assert not predict_image(smiley.data)["confident"]


def test_the_web_api_gives_a_doubted_photo_the_same_second_and_third_looks(faint_two, hair_seven):
    import httpx

    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app

    with running_server(create_app()) as url:
        for sample in (faint_two, hair_seven):  # read right at the second look, and at the third
            r = httpx.post(f"{url}/api/predict", files={"file": ("digit.jpg", sample.data, "image/jpeg")}, timeout=60)
            assert r.status_code == 200, r.text
            body, expected = r.json(), predict_image(sample.data)
            assert (body["digit"], body["confident"]) == (sample.label, True)
            assert body["probability"] == round(expected["probability"], 4)  # the API's JSON gives 4 places
