"""Pens and paper that MNIST never saw: stroke width normalised, ruled and squared paper lines removed."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from mnistlab.reading.binarise import binarise, remove_grain
from mnistlab.reading.faint import along_strokes
from mnistlab.reading.paper import components
from mnistlab.reading.rules import remove_rules
from mnistlab.reading.segment import find_digits
from mnistlab.reading.steps import crop_to_ink, drop_specks, to_mnist
from mnistlab.reading.width import MNIST_HALF_WIDTH, edge_distance, normalize_stroke_width, stroke_half_width
from mnistlab.trust.scores import digit_scores, fit_digit_space

SEVEN = [(70, 60), (200, 60), (120, 230)]
FOUR = ([(180, 80), (150, 190), (240, 190)], [(220, 110), (215, 250)])


def drawn(strokes, width: int, size=(280, 280), paper=255, ink=0, lines=()) -> np.ndarray:
    im = Image.new("L", size, paper)
    draw = ImageDraw.Draw(im)
    for line in lines:
        draw.line(line, fill=160, width=2)
    for stroke in strokes:
        draw.line(stroke, fill=ink, width=width, joint="curve")
    return np.asarray(im)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def width_of(digit: np.ndarray) -> float:
    return digit_scores(fit_digit_space(np.zeros((2, 28, 28), np.uint8), k=1), digit[None], np.zeros(1))[0, 3]


@pytest.mark.parametrize("width", [1, 2, 24, 30])
def test_hair_lines_and_markers_come_out_with_a_pen_like_stroke(width):
    reference = to_mnist(drawn([SEVEN], 5))
    got = to_mnist(drawn([SEVEN], width))
    assert similarity(got, reference) > 0.8
    assert 0.6 * width_of(reference) <= width_of(got) <= 1.6 * width_of(reference)


@pytest.mark.parametrize("size", [400, 600])
def test_a_hair_line_that_crosses_itself_is_redrawn_unbroken(size):
    # Anti-aliased 1 px lines: area-averaged to the 64 px working size they are a fifth of a pixel's
    # ink, twice that where they cross; cut at half the crossing's ink, the lines fell apart into dots.
    ink = np.zeros((size, size), np.float32)
    for a, b in [
        ((60, 40), (size - 60, size - 40)),
        ((size - 60, 40), (60, size - 40)),
        ((40, size // 2), (size - 40, size // 2 + 10)),
    ]:
        cv2.line(ink, a, b, 1.0, 1, cv2.LINE_AA)
    redrawn = normalize_stroke_width(crop_to_ink(ink))
    assert components(redrawn > 0.5)[0] - 1 == 1  # one piece of ink, as drawn
    assert redrawn.shape[0] >= 0.9 * max(redrawn.shape)  # and all of it: the ends were not lost


def test_a_hair_thin_small_loop_stays_open_when_redrawn():
    # A slanted "8" in a handwriting font has a top loop a fifth of its height: redrawn with MNIST's pen it was
    # filled, and the "8" read as a confident "0". The pen is made thinner for it, not thinner than half.
    ink = np.zeros((200, 110), np.float32)
    cv2.ellipse(ink, (55, 28), (16, 12), 0, 0, 360, 1.0, 3, cv2.LINE_AA)
    cv2.ellipse(ink, (55, 118), (40, 78), 0, 0, 360, 1.0, 3, cv2.LINE_AA)
    redrawn = normalize_stroke_width(ink) > 0.5
    assert ndimage.label(~np.pad(redrawn, 1))[1] == 3  # the paper around it and both loops (4-connected)
    assert stroke_half_width(redrawn) >= 0.5 * MNIST_HALF_WIDTH * max(redrawn.shape)


def test_mnist_digits_keep_their_own_strokes(mnist_full):
    digits = np.asarray(mnist_full.images[60000:60500]).astype(np.float32) / 255
    unchanged = [np.array_equal(normalize_stroke_width(crop_to_ink(d)), crop_to_ink(d)) for d in digits]
    assert np.mean(unchanged) >= 0.98


@pytest.mark.parametrize("pen", [4, 8, 14, 20, 28, 40])
def test_a_straight_1_in_any_pen_has_the_ink_of_mnists_1s(pen):
    # A bar 1.4 px wide in MNIST's 20 px box, within the width tolerance, was rounded to 1 px by fit_to_box: under
    # the ink MNIST's 1s have, "not digit-shaped" (pens of 14 and 20 px on this photo; 4, 8 and 28 read).
    from mnistlab import predict_image

    photo = np.full((400, 300, 3), 235, np.uint8)
    cv2.line(photo, (150, 60), (150, 340), (40, 40, 40), pen)
    answer = predict_image(photo)
    assert answer["digit"] == 1 and answer["confident"], answer["reason"]
    assert (answer["mnist_image"] / 255).mean() >= 0.045  # MNIST's 1s: 0.05-0.08 of the box


def test_stroke_half_width_measures_the_pen():
    for width in (4, 8, 16):
        mask = drawn([[(20, 100), (180, 100)]], width, size=(200, 200)) < 128
        assert stroke_half_width(mask) == pytest.approx(width / 2, abs=1.0)
    assert stroke_half_width(np.zeros((10, 10), bool)) == 0.0
    assert MNIST_HALF_WIDTH * 20 == pytest.approx(1.3)  # 2.6 px strokes in MNIST's 20 px box


def test_edge_distances_are_scipys_exact_ones():
    rng = np.random.default_rng(0)
    masks = [cv2.GaussianBlur(rng.random((60, 90)).astype(np.float32), (0, 0), 3) > 0.5 for _ in range(20)]
    masks += [np.ones((1, 1), bool), np.ones((7, 3), bool), np.ones((28, 28), bool)]  # nothing outside: scipy's rule
    for mask in masks:
        ours, theirs = edge_distance(mask), ndimage.distance_transform_edt(mask)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("grid", [False, True])
def test_ruled_and_squared_paper_lose_their_lines_and_keep_the_digit(grid):
    rules = [[(0, y), (400, y + 6)] for y in range(20, 300, 50)]
    if grid:
        rules += [[(x, 0), (x + 4, 300)] for x in range(10, 400, 50)]
    plain = to_mnist(drawn(FOUR, 6, size=(400, 300), paper=235, ink=20))
    ruled = to_mnist(drawn(FOUR, 6, size=(400, 300), paper=235, ink=20, lines=rules))
    assert similarity(ruled, plain) > 0.85
    mask = drawn(FOUR, 6, size=(400, 300), paper=235, ink=20, lines=rules) < 200
    cleaned = remove_rules(mask)
    assert cleaned.sum() < 0.5 * mask.sum()  # the lines were most of the ink
    assert cleaned[190, 160:235].mean() > 0.8  # the 4's bar survives the rules near it


def test_a_stroke_written_on_a_rule_stays():
    # People write on the line: the foot of this "2" runs along a rule for 80 px, as thin as the rule
    # and darker (pen on print), and is all that tells it from a "7".
    rules = [[(0, y), (400, y)] for y in range(40, 300, 60)]  # a rule at y = 220
    two = [[(150, 100), (200, 70), (240, 110), (160, 220), (240, 220)]]
    page = drawn(two, 2, size=(400, 300), paper=235, ink=20, lines=rules)
    mask = page < 200
    cleaned = remove_rules(mask, (255 - page.astype(np.float32)) / 255)
    assert cleaned[219:222, 165:235].any(axis=0).mean() > 0.9  # the foot is kept
    assert cleaned[219:222, 20:140].mean() < 0.05 and cleaned[219:222, 260:380].mean() < 0.05  # the rule is not


def test_a_stroke_written_on_a_rule_too_faint_to_binarise_stays():
    # The rules are found in the ink but are too faint to be in the mask: the mask holds a rule only where
    # the pen wrote on it. Measured there alone, the pen's ink was taken for the rule's own, and the foot of
    # a "2" went with the rule: a confident 7 (a fine pen on a photographed ruled page).
    rng = np.random.default_rng(0)
    h, w = 300, 400
    ink = rng.normal(0.0, 0.02, (h, w)).astype(np.float32)
    for y in range(40, h, 60):  # rules at 0.15: found in the ink, below the mask's cut of 0.4
        ink[y, :] += 0.15
    foot = (slice(219, 222), slice(160, 240))  # the foot of a "2" along the rule at y = 220, 3 px thick
    ink[foot] = 0.7
    ink[100:220, 160:163] = 0.7  # and the rest of the digit, a stroke down to it
    mask = ink > 0.4
    assert mask[40].mean() < 0.01 and mask[220, 20:140].mean() < 0.01  # the rules are not in the mask
    cleaned = remove_rules(mask, ink)
    assert cleaned[foot].any(axis=0).mean() > 0.9  # the foot is kept


def test_one_long_stroke_is_a_one_not_a_rule():
    mask = drawn([[(140, 5), (140, 275)]], 6) < 128
    assert np.array_equal(remove_rules(mask), mask)


def test_a_lone_rule_running_on_past_the_digit_goes():
    # A photo that shows one rule of the paper only: no second line says the paper is ruled. Kept, the rule
    # the "7" stands on made it a "2" (a hair pen on a photographed ruled page, read confidently).
    rule = [[(0, 233), (280, 236)]]
    page = drawn([SEVEN], 3, paper=235, ink=20, lines=rule)
    mask = page < 200
    cleaned = remove_rules(mask, (255 - page.astype(np.float32)) / 255)
    assert cleaned[228:240, :90].sum() == 0 and cleaned[228:240, 160:].sum() == 0  # the rule is gone
    assert cleaned[60, 70:200].mean() > 0.9  # the 7 is not
    plain = to_mnist(drawn([SEVEN], 3, paper=235, ink=20))
    assert similarity(to_mnist(page), plain) > 0.9


def test_a_lone_rule_under_a_wide_digit_goes():
    # A wide, heavy digit sitting on the photo's one rule covers it where they meet: no ridge in the ink
    # there, so the search in the ink finds no line, but in the mask the rule runs through (an 8x8 digit
    # blown up on ruled paper kept it under its foot and was taken for no digit).
    page = np.full((280, 320), 235, np.uint8)
    cv2.line(page, (0, 240), (320, 242), 150, 2)
    cv2.ellipse(page, (160, 140), (75, 92), 0, 0, 360, 20, 30)
    mask = page < 200
    cleaned = remove_rules(mask, (255 - page.astype(np.float32)) / 255)
    assert cleaned[236:246, :60].sum() == 0 and cleaned[236:246, 260:].sum() == 0  # the rule is gone
    assert np.array_equal(cleaned[:225], mask[:225])  # the digit is not


def test_a_bar_across_a_tight_crop_is_not_a_rule():
    # The bar of a "7" cropped to its edges is a line through the whole image too, but ends with the digit.
    seven = [[(0, 20), (279, 20), (120, 279)]]
    page = drawn(seven, 6, paper=235, ink=20)
    mask = page < 200
    assert np.array_equal(remove_rules(mask, (255 - page.astype(np.float32)) / 255), mask)


def test_a_filled_shape_keeps_its_outline_and_gets_a_soft_edge():
    blob = np.zeros((60, 60), np.float32)
    blob[10:50, 5:55] = 1.0  # a filled box, as a shoe, a blot or a blown-up 8x8 digit is
    out = normalize_stroke_width(crop_to_ink(blob))
    assert out.shape[1] / out.shape[0] == pytest.approx(50 / 40, abs=0.05)  # not thinned to a line
    assert out[out.shape[0] // 2, out.shape[1] // 2] == 1.0  # solid inside
    assert out[0].max() < 0.2 and out[:, 0].max() < 0.2  # fading to its edge, as MNIST's strokes do
    assert 0.5 < (out > 0.5).mean() < 0.9


def test_a_wedge_shaped_stroke_is_not_thinned_to_a_fork():
    # A "1" of a blown-up low-resolution scan: wide at the foot, narrow at the top. Thinned to its
    # middle lines it became a "Y" whose arms read as a 4 or an 8.
    wedge = np.zeros((200, 120), np.float32)
    cv2.fillPoly(wedge, [np.array([[45, 0], [75, 0], [105, 199], [15, 199]])], 1.0)  # 30 px wide atop, 90 at the foot
    out = normalize_stroke_width(wedge) > 0.5
    rows = out.sum(axis=1)  # ink across each row, top to bottom
    assert rows[-5] > 2 * rows[5]  # still a wedge: wider at the foot than at the top
    assert (np.diff(rows[2:-2]) >= -1).all()  # widening all the way down
    starts = np.diff(np.pad(out.astype(np.int8), ((0, 0), (1, 0))), axis=1) == 1
    assert starts.sum(axis=1).max() == 1  # one run of ink in every row: no fork


def faint_ruled_page(rng: np.random.Generator, tilt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ink strength (240, 320) of a photo of ruled and squared paper whose rules, faint as a thin pen's line,
    come out of binarisation in pieces; a digit's strokes. Returns (ink, rule pixels, digit pixels)."""
    h, w = 240, 320
    rows, cols = np.mgrid[0:h, 0:w]
    rules = np.zeros((h, w), bool)
    for y in range(18, h, 40):  # horizontal rules, turned by ``tilt`` rows per column
        rules |= np.abs(rows - (y + tilt * cols)) < 0.8
    for x in range(25, w, 40):  # and vertical ones, sheared the other way
        rules |= np.abs(cols - (x - tilt * rows)) < 0.8
    digit = np.zeros((h, w), bool)
    digit[60:180, 150:156] = True  # a "1", 6 px wide, crossing three rules
    ink = rng.normal(0.0, 0.04, (h, w)).astype(np.float32)  # paper texture and sensor noise
    ink[rules] += 0.2  # 5 noise-sigmas: a fifth of the rules pass binarisation, in short pieces
    ink[digit] = 0.4
    return ink, rules & ~digit, digit


@pytest.mark.parametrize("tilt", [0.0, 0.05])
def test_faint_rules_broken_by_binarisation_are_still_found_and_removed(tilt):
    ink, rules, digit = faint_ruled_page(np.random.default_rng(0), tilt)
    mask = binarise(ink)
    assert 0.1 < mask[rules].mean() < 0.5  # the rules are there in pieces, as in a photo
    cleaned = remove_rules(mask, ink)
    assert cleaned[rules].sum() < 0.1 * mask[rules].sum()  # nearly all of them gone
    assert cleaned[digit].mean() > 0.97  # the digit kept, where it crosses the rules too


def squared_page(rule_lean: float, vertical_line, digit_cols: slice):
    """Ink strength (240, 320) of squared paper whose rules (every 40 px, leaning ``rule_lean``) and one
    vertical line (``vertical_line(rows, cols)``: its mask) show, the others too faint to, beside a "1"
    (``digit_cols`` wide) that crosses three rules; with the rules', the line's and the digit's masks."""
    rng = np.random.default_rng(0)
    h, w = 240, 320
    rows, cols = np.mgrid[0:h, 0:w]
    ink = rng.normal(0.0, 0.03, (h, w)).astype(np.float32)
    rules = np.zeros((h, w), bool)
    for y in range(18, h, 40):
        rules |= np.abs(rows - (y + rule_lean * cols)) < 0.8
    vertical = vertical_line(rows, cols)
    digit = np.zeros((h, w), bool)
    digit[60:180, digit_cols] = True
    ink[rules | vertical] += 0.3
    ink[digit] = 0.5
    return ink, rules, vertical, digit


def assert_only_the_digit_is_left(ink, rules, vertical, digit) -> None:
    mask = binarise(ink)
    cleaned = remove_rules(mask, ink)
    assert cleaned[vertical & ~rules].sum() < 0.1 * mask[vertical & ~rules].sum()
    assert cleaned[rules].sum() < 0.1 * mask[rules].sum()
    assert cleaned[digit].mean() > 0.97


def test_the_one_grid_line_found_across_the_rules_goes_too():
    # Squared paper whose one vertical line that shows is broken at the bottom (the others too faint to
    # show): a single line along an axis could be a "1", but on a page ruled the other way it is a rule
    # when the mask holds it through most of the image. It stayed, and an empty page read as a 1.
    def broken(rows, cols):  # three quarters of the height
        return (np.abs(cols - (100 - 0.03 * rows)) < 0.8) & (rows < 180)

    assert_only_the_digit_is_left(*squared_page(0.03, broken, slice(220, 226)))


@pytest.mark.parametrize("x0", [14, 120, 200])
def test_grid_lines_fanned_out_or_leaving_through_the_side_go_too(x0):
    # A sheared photo of squared paper: its rules lean by 0.06, but its vertical lines by 0.115 the other way,
    # too steep to be found in the ink and 0.055 off the rules' own lean, so that at that lean alone their
    # mask pixels spread over too many rows to count. The one from x = 14 leaves the image through its left
    # side at half its height. Each stayed (this test fails on the previous code), read as a 1 beside a digit.
    def fanned(rows, cols):
        return np.abs(cols - (x0 - 0.115 * rows)) < 0.8

    assert_only_the_digit_is_left(*squared_page(0.06, fanned, slice(250, 256)))


def mottled_paper(rng: np.random.Generator, h: int = 240, w: int = 320) -> np.ndarray:
    """Ink strength (h, w) of a photographed sheet's paper: blotches of about 8 px (0.02) that the cubic
    light surface leaves, and sensor noise (0.025), as measured on the paper photos of ``testing.hands``."""
    blotch = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 8)
    return blotch * (0.02 / blotch.std()) + rng.normal(0, 0.025, (h, w)).astype(np.float32)


def test_ink_averaged_along_strokes_lifts_a_thin_line_out_of_the_noise():
    noise = np.random.default_rng(0).normal(0, 0.05, (240, 320)).astype(np.float32)
    for end in ((300, 30), (300, 210), (160, 220)):  # shallow, diagonal, steep: between the 8 directions
        line = np.zeros(noise.shape, np.float32)
        cv2.line(line, (20, 20), end, 1.0, 2, cv2.LINE_AA)  # a thin pen's stroke, 2 px
        on, off = line > 0.5, cv2.dilate(line, np.ones((9, 9), np.uint8)) == 0
        # A clean line keeps its strength along its length (0.92-1.0).
        assert np.median(along_strokes(line)[on]) > 0.85
        # At 2 noise-sigmas on its own, the line stands 5.6-6.2 sigmas out of the noise left after averaging.
        ink = 0.1 * line + noise
        lifted = along_strokes(ink)
        before = (ink[on].mean() - ink[off].mean()) / ink[off].std()
        after = (lifted[on].mean() - lifted[off].mean()) / lifted[off].std()
        assert before < 2.2 and after > 2.5 * before


def test_a_thin_faint_line_on_mottled_paper_is_found_in_one_piece():
    found, longest = [], []
    for seed in range(6):
        paper = mottled_paper(np.random.default_rng(seed))
        line = np.zeros(paper.shape, np.float32)
        cv2.line(line, (100, 40), (220, 200), 1.0, 2, cv2.LINE_AA)  # a thin pen's stroke, 0.12 over the paper
        on = line > 0.5
        for ink in (paper + 0.12 * line, remove_grain(paper + 0.12 * line)):
            mask = drop_specks(binarise(ink))
            n, labels = components(mask)
            found.append(mask[on].mean())
            longest.append(np.bincount(labels[on & mask], minlength=n)[1:].max(initial=0) / on.sum())
        assert not drop_specks(binarise(remove_grain(paper))).any()  # the empty page stays empty
    # Without the grain removed, the blotches cut the line into dots: about half of it found (51%), its
    # longest piece a quarter (23%); with it, 85% found, the longest piece 70%.
    assert np.mean(found[::2]) < 0.6 and np.mean(longest[::2]) < 0.3
    assert np.mean(found[1::2]) > 0.8 and np.mean(longest[1::2]) > 0.6


def faint_seven_photo(seed: int, strength: float = 0.08, *, scale: int = 1, width: int = 2) -> bytes:
    """A PNG photo of a thin pen's 7 (``width`` px, ``strength`` darker than the paper) on mottled paper,
    ``scale`` times 280 px."""
    ink = mottled_paper(np.random.default_rng(seed), 280 * scale, 280 * scale)
    line = np.zeros(ink.shape, np.float32)
    cv2.polylines(line, [np.array(SEVEN, np.int32) * scale], False, 1.0, width, cv2.LINE_AA)
    grey = np.clip(0.75 - ink - strength * line, 0, 1)
    buf = io.BytesIO()
    Image.fromarray((grey * 255).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_a_second_look_finds_a_faint_stroke_the_usual_floor_misses():
    reference = to_mnist(drawn([SEVEN], 5))
    usual, faint = [], []
    for seed in range(6):
        photo = faint_seven_photo(seed)
        usual.append(similarity(to_mnist(photo), reference) if to_mnist(photo).any() else 0.0)
        faint.append(similarity(to_mnist(photo, faint=True), reference))
    # At the usual floor the 7 comes out in specks or not at all (mean similarity 0.03). Averaged along
    # its strokes, it comes out whole (0.84; 0.63 when the second look binarised at 3.5 noise-sigmas).
    assert np.mean(usual) < 0.3 and np.mean(faint) > 0.75
    drawing = drawn([SEVEN], 5)  # a clean drawing has no noise floor to go below
    np.testing.assert_array_equal(to_mnist(drawing, faint=True), to_mnist(drawing))


def test_a_third_look_finds_a_hair_line_the_work_size_loses():
    reference = to_mnist(drawn([SEVEN], 5))
    second, third = [], []
    for seed in range(6):
        # A hair-thin 7 (1 px) on an 840 px photo: reduced to the work size, a third of its contrast is left.
        photo = faint_seven_photo(seed, 0.22, scale=3, width=1)
        faint, closer = to_mnist(photo, faint=True), to_mnist(photo, closer=True)
        second.append(similarity(faint, reference) if faint.any() else 0.0)
        third.append(similarity(closer, reference) if closer.any() else 0.0)
    # Reduced from 840 px to 320, the line comes out in pieces even averaged along its strokes (mean
    # similarity 0.37); its mask found at 640 px, whole (0.85).
    assert np.mean(second) < 0.5 and np.mean(third) > 0.75
    # No more to see: a photo no larger than the work size, a clean drawing.
    small = faint_seven_photo(0, 0.5, width=1)
    np.testing.assert_array_equal(to_mnist(small, closer=True), to_mnist(small, faint=True))
    drawing = drawn([SEVEN], 5, size=(840, 840))
    np.testing.assert_array_equal(to_mnist(drawing, closer=True), to_mnist(drawing))


@pytest.mark.parametrize(("length", "is_digit"), [(14, False), (40, True)])
def test_a_speck_is_no_digit(length, is_digit):
    # A 14 px dash on a 320 px photo (a grid line's stub, a pen's touch) is more than drop_specks drops
    # (3% of the longer side) but under 6% of it: blown up to MNIST's box it read as a 1. A 40 px stroke
    # is a digit's size. A row of digits is held to the same rule: ``read_number`` read the dash as a sure 1.
    ink = mottled_paper(np.random.default_rng(2))
    ink[100 : 100 + length, 150:153] += 0.5
    grey = np.clip(0.75 - ink, 0, 1)
    buf = io.BytesIO()
    Image.fromarray((grey * 255).round().astype(np.uint8)).save(buf, "PNG")
    assert to_mnist(buf.getvalue()).any() == is_digit
    assert len(find_digits(buf.getvalue())[1]) == int(is_digit)


def test_removing_the_grain_keeps_a_markers_core_and_a_clean_drawing():
    ink = mottled_paper(np.random.default_rng(1))
    ink[60:180, 140:170] += 0.5  # a marker's stroke, 30 px wide: wider than half the grain's square
    core, before = remove_grain(ink)[70:170, 145:165], ink[70:170, 145:165]
    # Only the paper's blotches under it move it (a mean over the square with the ink in it would take
    # most of the stroke away as paper).
    assert abs(core.mean() - before.mean()) < 0.01 and np.abs(core - before).max() < 0.06
    drawing = np.zeros((280, 280), np.float32)
    drawing[50:230, 130:140] = 1.0  # a canvas: its paper exactly 0 ink
    np.testing.assert_array_equal(remove_grain(drawing), drawing)


def test_a_sliver_of_a_rule_along_the_edge_is_no_writing():
    mask = np.zeros((200, 200), bool)
    mask[60:140, 98:104] = True  # a "1"
    mask[20:120, 198:200] = True  # a rule cut by the frame: long, but wholly within the edge strip
    assert np.array_equal(drop_specks(mask)[:, :190], mask[:, :190])
    assert not drop_specks(mask)[:, 190:].any()
