"""Clean drawings (canvas exports) take shortcuts through the reading steps, and read as the plain steps do.

A clean drawing's paper is one exact grey (``flat_paper``): its ink is
binarised and cleaned in the ink's bounding box, it skips the sheet search
where nothing is bright enough to be a sheet, and it skips the search for the
rules of lined paper (a rule would cross its edges, which are all paper).
Each shortcut is checked against the plain chain of steps, byte for byte;
where a shortcut must not apply (a ruled canvas, a sheet on a dark table) the
plain steps still run. Plain PNG files (a canvas export) are decoded by
OpenCV: every kind of PNG reads as Pillow reads it, errors included.
"""

from __future__ import annotations

import io
import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from mnistlab import ImageError, predict_image, read_number
from mnistlab.reading.decode import WORK_SIDE, _pil_to_grey, _plain_png, load_image, to_grey
from mnistlab.reading.paper import flat_paper, ink_against, ink_strength
from mnistlab.reading.rules import remove_rules
from mnistlab.reading.segment import segment_digits
from mnistlab.reading.sheet import isolate_page
from mnistlab.reading.steps import (
    binarise,
    clean_ink,
    drop_specks,
    ink_and_mask,
    mnist_digit,
    read_digit,
    reduce_drawing,
    remove_grain,
    to_mnist,
)
from mnistlab.testing.hands import digit_samples
from mnistlab.testing.surfaces import CANVASES
from mnistlab.trust import predict as predict_module


def plain_ink_and_mask(image) -> tuple[np.ndarray, np.ndarray]:
    """Every step on the whole image, none skipped: what the shortcuts must agree with."""
    page = isolate_page(to_grey(image))
    ink = ink_strength(page)
    if flat_paper(page) is not None:  # a clean drawing is read at its work size, shortcuts or not
        ink = reduce_drawing(ink)
    mask = drop_specks(remove_rules(binarise(remove_grain(ink)), ink))
    return clean_ink(ink, mask), mask


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def canvases(mnist_full) -> list[bytes]:
    """Canvas drawings as they reach the server: MNIST test digits drawn dark on white (grey PNG), white on
    black (a browser's opaque RGBA export), and hand canvases of every kind."""
    n = mnist_full.details["n_train"]
    digits = np.asarray(mnist_full.images[n : n + 16])
    out = [png(np.asarray(Image.fromarray(255 - d).resize((280, 280), Image.Resampling.BILINEAR))) for d in digits]
    out += [
        png(np.asarray(Image.fromarray(d).resize((280, 280), Image.Resampling.BILINEAR).convert("RGBA")))
        for d in digits[:8]
    ]
    rng = np.random.default_rng(11)
    out += [
        s.data for where in CANVASES for src in ("pen", "optdigits") for s in digit_samples(src, 4, rng, surface=where)
    ]
    return out


def test_clean_drawings_read_as_the_plain_steps_do(canvases):
    flat = 0
    for data in canvases:
        flat += flat_paper(to_grey(data)) is not None
        ink, mask, _ = ink_and_mask(data)
        plain_ink, plain_mask = plain_ink_and_mask(data)
        np.testing.assert_array_equal(mask, plain_mask)
        np.testing.assert_array_equal(ink, plain_ink)
        np.testing.assert_array_equal(to_mnist(data), mnist_digit(plain_ink))
    assert flat >= 0.8 * len(canvases)  # the shortcuts were taken


def zees(ruled: bool = False) -> np.ndarray:
    """Three Z-shaped 2s across a black canvas (140, 220) uint8, their tops and bottoms nearly edge to edge;
    ``ruled``: on grey rules from edge to edge."""
    img = np.zeros((140, 220), np.uint8)
    if ruled:
        for y in range(16, 140, 26):
            cv2.line(img, (0, y), (219, y), 120, 2, cv2.LINE_AA)
    for k in range(3):
        left = int(12 + k * 67.5)
        right = left + 57
        for start, end in (((left, 30), (right, 30)), ((right, 30), (left, 112)), ((left, 112), (right, 112))):
            cv2.line(img, start, end, 255, 9, cv2.LINE_AA)
    return img


@pytest.mark.parametrize(("shape", "k"), [((280, 280), 2), ((300, 431), 2), ((450, 440), 3), ((120, 560), 1)])
def test_a_clean_drawing_is_averaged_in_whole_blocks_down_to_its_work_size(shape, k):
    rng = np.random.default_rng(0)
    ink = np.where(rng.random(shape) < 0.1, rng.random(shape), 0).astype(np.float32)  # paper exactly 0
    small = reduce_drawing(ink)
    h, w = -(-shape[0] // k), -(-shape[1] // k)  # the last, partial blocks filled with paper
    assert small.shape == (h, w)
    blocks = np.zeros((h * k, w * k), np.float32)
    blocks[: shape[0], : shape[1]] = ink
    np.testing.assert_allclose(small, blocks.reshape(h, k, w, k).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_array_equal(small == 0, blocks.reshape(h, k, w, k).max(axis=(1, 3)) == 0)  # paper stays 0


def test_the_web_page_canvas_is_read_at_half_its_size():
    """The page's 280 px canvas, a 2 drawn 14 px wide: its ink and mask at 140 px, read as a confident 2."""
    img = np.full((280, 280), 255, np.uint8)
    cv2.polylines(
        img, [np.array([[70, 80], [140, 50], [200, 90], [80, 220], [210, 220]], np.int32)], False, 0, 14, cv2.LINE_AA
    )
    ink, mask, _ = ink_and_mask(img)
    assert mask.shape == ink.shape == (140, 140)
    answer = predict_image(img)
    assert (answer["digit"], answer["confident"]) == (2, True)


def test_a_doubted_drawing_gets_no_second_look_and_a_doubted_photo_does(monkeypatch):
    """A clean drawing's second look would read the same image: ``read_digit`` says which
    images are drawings, and ``predict_image`` reads a doubted one once."""
    looks = []
    reread = predict_module.to_mnist  # what predict_image calls for a second look only

    def counted(image, **kwargs):
        looks.append(kwargs)
        return reread(image, **kwargs)

    monkeypatch.setattr(predict_module, "to_mnist", counted)
    scribble = np.full((280, 280), 255, np.uint8)  # a W: doubted ("does not look like a digit")
    cv2.polylines(scribble, [np.array([[40, 60], [90, 220], [140, 80], [190, 220], [240, 60]], np.int32)], False, 0, 12)
    noise = np.random.default_rng(0).integers(90, 170, (200, 200)).astype(np.uint8)  # a page of grain: no drawing
    assert read_digit(png(scribble))[1] and not read_digit(png(noise))[1]
    # A doubted photo whose second look does not stand gets a third (``look_again``).
    for image, later_looks in ((scribble, []), (noise, [{"faint": True}, {"closer": True}])):
        looks.clear()
        answer = predict_image(png(image))
        np.testing.assert_array_equal(answer["mnist_image"], to_mnist(png(image)))
        assert not answer["confident"] and looks == later_looks, (answer["reason"], looks)


def test_a_clean_drawing_keeps_the_long_straight_strokes_a_rule_search_would_cut():
    img = zees()
    assert flat_paper(to_grey(img)) is not None
    ink = ink_strength(to_grey(img))
    binarised = binarise(ink)
    assert (binarised & ~remove_rules(binarised, ink)).sum() > 1000  # the tops and bottoms, taken for rules
    _, mask, _ = ink_and_mask(img)
    np.testing.assert_array_equal(mask, drop_specks(binarised))  # all of them kept
    assert len(segment_digits(img)) == 3


def test_a_ruled_canvas_still_loses_its_rules():
    img = np.full((160, 200), 255, np.uint8)
    rows = list(range(14, 160, 26))
    for y in rows:
        cv2.line(img, (0, y), (199, y), 120, 2, cv2.LINE_AA)
    cv2.line(img, (70, 40), (130, 40), 0, 8, cv2.LINE_AA)
    cv2.line(img, (130, 40), (90, 130), 0, 8, cv2.LINE_AA)
    assert flat_paper(to_grey(img)) is None  # the rules cross its edges
    ink = ink_strength(to_grey(img))
    assert binarise(ink)[rows, :40].sum() > 100
    _, mask, _ = ink_and_mask(img)
    assert mask[rows, :40].sum() == 0 and mask[35:45, 75:125].all()  # the rules gone, the digit's top kept


def test_a_canvas_whose_strokes_reach_most_of_it_is_still_a_clean_drawing():
    """Fifteen 1s across the page's number pad (420 x 140, white on black, as the browser exports it) read as
    no digits at all: the strokes reached most cells of the paper fit's thumbnail, so the canvas was taken for
    a photo, whose fitted paper settled between ink and paper and took the black for the ink."""
    img = np.zeros((140, 420), np.uint8)
    for i in range(15):
        x = round(21 + 25.2 * i)
        cv2.line(img, (x + 8 * (i % 3), 28 + 4 * (i % 2)), (x, 112), 255, 14, cv2.LINE_AA)
    data = png(np.asarray(Image.fromarray(img).convert("RGBA")))
    assert flat_paper(to_grey(data)) == (0.0, False)  # black paper, light ink
    answer = read_number(data)
    assert answer["number"] == "1" * 15 and answer["confident"]


def test_a_photo_blown_out_at_its_edges_with_a_shadow_over_most_of_it_is_no_clean_drawing():
    """Its border pure white, a soft shadow over half of it: taken for a clean drawing when strokes could reach
    most of one, its shadow was ink, and its 7 read as a doubted 9; the fit of its paper reads it right."""
    yy, xx = np.mgrid[:280, :280]
    shade = np.clip(1 - np.hypot(yy - 140, xx - 140) / 110, 0, 1) * 90
    img = np.clip(np.round(255.0 - shade), 0, 255).astype(np.uint8)
    cv2.putText(img, "7", (95, 200), cv2.FONT_HERSHEY_SIMPLEX, 4, 40, 12, cv2.LINE_AA)
    assert flat_paper(to_grey(png(img))) is None
    answer = predict_image(png(img))
    assert (answer["digit"], answer["confident"]) == (7, True)


def test_the_sheet_search_is_skipped_only_where_no_sheet_can_be():
    # Light ink on black: a clean drawing, and a white sheet with a dark digit lying on a black table, its
    # paper grainy as a camera sees it (a sheet of one exact grey on a canvas of another is a shape drawn there).
    sheet = np.zeros((200, 200), np.uint8)
    sheet[30:165, 40:175] = np.random.default_rng(1).integers(232, 249, (135, 135))
    cv2.line(sheet, (80, 60), (130, 140), 30, 7, cv2.LINE_AA)
    drawing = np.asarray(Image.fromarray(zees()).convert("L"))
    for img in (sheet, drawing):
        grey = to_grey(img)
        found = flat_paper(grey)
        assert found is not None and not found[1]  # flat, light "ink"
        plain = isolate_page(grey)
        shortcut = isolate_page(grey, found[0])
        assert (shortcut is grey) == (plain is grey)
        np.testing.assert_array_equal(shortcut, plain)
    assert isolate_page(to_grey(sheet)).shape != sheet.shape  # the sheet was cut out, shortcut or not


@pytest.mark.parametrize("dark", [True, False])
def test_ink_against_into_its_own_grey_gives_the_same_numbers(dark):
    rng = np.random.default_rng(4)
    grey = rng.random((50, 60)).astype(np.float32)
    for background in (np.float32(0.7), (0.5 + 0.5 * rng.random((50, 60))).astype(np.float32)):
        expected = ink_against(grey, background, dark)
        scratch = grey.copy()
        np.testing.assert_array_equal(ink_against(scratch, background, dark, out=scratch), expected)


@pytest.mark.parametrize("side", [280, WORK_SIDE + 80])
def test_an_opaque_rgba_export_reads_as_its_grey(side):
    rng = np.random.default_rng(side)
    rgb = (rng.random((side, side - 20, 3)) * 255).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    grey = np.asarray(Image.fromarray(rgb).convert("L")) * np.float32(1 / 255)
    if side > WORK_SIDE:  # the float grey area-averaged, as any image with an alpha channel is
        size = (round((side - 20) * WORK_SIDE / side), WORK_SIDE)
        grey = np.clip(np.asarray(Image.fromarray(grey, "F").resize(size, Image.Resampling.BOX)), 0.0, 1.0)
    np.testing.assert_array_equal(to_grey(png(rgba)), grey)


@pytest.mark.parametrize("stroke", [0, 255])
def test_a_transparent_canvas_composites_as_the_blend_formula(stroke):
    rng = np.random.default_rng(stroke)
    alpha = np.zeros((120, 90), np.uint8)
    alpha[30:90, 20:70] = rng.integers(0, 256, (60, 50))
    rgba = np.dstack([np.full((120, 90, 3), stroke, np.uint8), alpha])
    unit = np.float32(1 / 255)
    a, grey = alpha * unit, np.float32(stroke) * unit
    background = 1.0 if stroke == 0 else 0.0
    np.testing.assert_array_equal(to_grey(png(rgba)), np.clip(a * grey + (1.0 - a) * background, 0.0, 1.0))


@pytest.mark.parametrize("stroke", [0, 255])
def test_a_grey_and_alpha_array_composites_as_its_rgba_does(stroke):
    # np.asarray of an "LA" image, (H, W, 2), was refused as no image's shape; its RGBA twin read.
    rng = np.random.default_rng(stroke)
    alpha = np.zeros((120, 90), np.uint8)
    alpha[30:90, 20:70] = rng.integers(0, 256, (60, 50))
    grey_alpha = np.dstack([np.full((120, 90), stroke, np.uint8), alpha])
    rgba = np.dstack([np.full((120, 90, 3), stroke, np.uint8), alpha])
    assert np.asarray(Image.fromarray(grey_alpha, "LA")).shape == (120, 90, 2)
    np.testing.assert_allclose(to_grey(grey_alpha), to_grey(rgba), atol=1e-6)


def test_a_channels_first_array_reads_as_its_image_or_says_to_move_its_channels():
    """A PyTorch-style (1, H, W) grey image (``tensor.numpy()``), which ``predict_array`` read, was refused by
    ``predict_image``; a (3, H, W) colour one said only which shapes it takes."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (120, 90)).astype(np.uint8)
    np.testing.assert_array_equal(to_grey(grey[None]), to_grey(grey))
    with pytest.raises(ImageError) as caught:
        to_grey(np.stack([grey] * 3))
    assert str(caught.value) == (
        "Cannot use an array of shape (3, 120, 90) as an image: its colour channels come first; move them last "
        "with np.moveaxis(a, 0, -1), or pass the image's file."
    )


@pytest.mark.parametrize("stroke", [0, 255])
def test_faint_strokes_on_a_transparent_canvas_are_composited_as_opaque_ones_are(stroke):
    """Strokes nowhere more than half opaque (a soft brush) were taken for dark ink whatever their colour: white
    ones were put on white, a blank page ("no ink found"), where dark ones at the same opacity read."""
    alpha = np.zeros((120, 90), np.uint8)
    cv2.line(alpha, (45, 20), (45, 100), 110, 9)  # a 1 at 43% opacity
    rgba = np.dstack([np.full((120, 90, 3), stroke, np.uint8), alpha])
    a, grey = alpha * np.float32(1 / 255), np.float32(stroke) * np.float32(1 / 255)
    background = 1.0 if stroke == 0 else 0.0
    np.testing.assert_array_equal(to_grey(png(rgba)), np.clip(a * grey + (1.0 - a) * background, 0.0, 1.0))
    assert predict_image(png(rgba))["digit"] == 1


def test_a_bold_dark_digit_cropped_to_its_strokes_on_a_transparent_canvas_reads_as_on_white():
    """A dark digit of one colour on a transparent canvas, cropped so tight that its strokes are most of it (a
    bold 8 exported as a sticker), was put on its own colour, the median of its opaque pixels, as a cut-out photo
    is: a blank page, 'no ink found', where the same drawing on white reads. A blank white sheet cut out (its
    corners transparent) stays blank, not a white shape on black."""
    alpha = np.zeros((240, 160), np.uint8)
    cv2.ellipse(alpha, (80, 62), (70, 52), 0, 0, 360, 255, 35, cv2.LINE_AA)  # a bold 8
    cv2.ellipse(alpha, (80, 170), (75, 65), 0, 0, 360, 255, 35, cv2.LINE_AA)
    assert np.count_nonzero(alpha > 127) > alpha.size / 2
    for ink in (0, 40):
        rgba = np.dstack([np.full(alpha.shape + (3,), ink, np.uint8), alpha])
        on_white = np.round(255 - alpha * ((255 - ink) / 255)).astype(np.uint8)  # flattened onto white
        np.testing.assert_allclose(to_grey(png(rgba)), to_grey(png(on_white)), atol=1 / 255)
        np.testing.assert_allclose(to_grey(rgba), to_grey(on_white), atol=1 / 255)  # as an array too
        answer = predict_image(png(rgba))
        assert answer["reason"] != "no ink found"
        assert answer["digit"] == predict_image(on_white)["digit"]
    sheet = np.zeros((300, 300), np.uint8)
    cv2.fillPoly(sheet, [cv2.boxPoints(((150, 150), (220, 260), 10)).astype(np.int32)], 255)
    blank = png(np.dstack([np.full(sheet.shape + (3,), 250, np.uint8), sheet]))
    assert predict_image(blank)["reason"] == "no ink found" and read_number(blank)["number"] == ""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_chunk(data: bytes, kind: bytes, body: bytes, after_idat: bool = False) -> bytes:
    """A PNG with one more chunk, before its first IDAT or right after its last."""
    at = data.rindex(b"IEND") - 4 if after_idat else data.index(b"IDAT") - 4
    return data[:at] + _chunk(kind, body) + data[at:]


def png_variants() -> dict[str, tuple[bytes, bool]]:
    """PNG files of one drawing, each with whether OpenCV may decode it (a plain PNG) or Pillow must."""
    rng = np.random.default_rng(8)
    rgba = (rng.random((60, 50, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(rng.random((60, 50)) < 0.6, 0, 255)
    images = {"L": Image.fromarray(rgba[..., 0]), "RGB": Image.fromarray(rgba[..., :3]), "RGBA": Image.fromarray(rgba)}
    out = {}
    for mode, image in images.items():
        for name, kw in {"": {}, " optimised": {"optimize": True}, " stored": {"compress_level": 0}}.items():
            buf = io.BytesIO()
            image.save(buf, "PNG", **kw)
            out[mode + name] = (buf.getvalue(), True)
    grey = out["L"][0]
    out["L larger than the work size"] = (png((rng.random((WORK_SIDE + 80, 300)) * 255).astype(np.uint8)), True)
    more = {
        "dpi and gamma": (_with_chunk(_with_chunk(grey, b"pHYs", bytes(9)), b"gAMA", struct.pack(">I", 45455)), True),
        "opaque RGBA": (png(np.dstack([rgba[..., :3], np.full((60, 50), 255, np.uint8)])), True),
        "text": (_with_chunk(grey, b"tEXt", b"Comment\x00drawn"), False),
        "transparent grey": (_with_chunk(grey, b"tRNS", b"\x00\x00"), False),
        "a chunk after the pixels": (_with_chunk(grey, b"tIME", bytes(7), after_idat=True), False),
        "a short gamma": (_with_chunk(grey, b"gAMA", b"\x00\x01"), False),
        "bad pixel checksum": (grey[:-20] + bytes([grey[-20] ^ 1]) + grey[-19:], False),
        "bytes after the end": (grey + b"\x00junk", False),
        "truncated": (grey[: len(grey) // 2], False),
    }
    for name, image in {
        "16-bit": Image.fromarray(rgba[..., 0].astype(np.uint16) * 257),
        "palette": images["RGB"].quantize(16),
        "LA": images["RGBA"].convert("LA"),
    }.items():
        buf = io.BytesIO()
        image.save(buf, "PNG")
        more[name] = (buf.getvalue(), False)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned
    buf = io.BytesIO()
    images["L"].save(buf, "PNG", exif=exif)
    more["EXIF orientation"] = (buf.getvalue(), False)
    return out | more


@pytest.mark.parametrize("name", list(png_variants()))
def test_png_files_read_as_pillow_reads_them(name):
    data, plain = png_variants()[name]
    assert (_plain_png(data) is not None) == plain
    try:
        expected = _pil_to_grey(load_image(data), WORK_SIDE)
    except ImageError as exc:
        with pytest.raises(ImageError, match=re.escape(str(exc))):
            to_grey(data)
        return
    np.testing.assert_array_equal(to_grey(data), expected)
