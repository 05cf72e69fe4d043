"""Images drawn to train the reader: glyphs in fonts, digits in other pens, flagged 1s, pairs of digits,
pen strokes, doodles, noise.

None of it comes from ``mnistlab.testing``, whose test sets use other fonts
and other pens. Everything is brought to the geometry ``to_mnist`` gives a
photo (crop, stroke width, 20 px box, centre of mass), so the nets see what
they will be shown.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib  # only for the folder of its bundled fonts
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from mnistlab.reading.steps import mnist_digit
from mnistlab.reading.width import stroke_half_width, thin

__all__ = [
    "LETTERS",
    "HANDWRITING_FONTS",
    "FONT_PACKAGES",
    "handwriting_fonts",
    "font_paths",
    "glyphs",
    "restroked",
    "restroked_sample",
    "flag_ones",
    "strokes",
    "doodle",
    "noise",
    "pair",
]

_CANVAS = 64  # strokes and glyphs are drawn on a 64 x 64 canvas, then brought to MNIST geometry
# Letters and symbols that are not digits. Left out, as fair readings of a digit
# when written by hand: O o Q D (0), I l i j J | ! ( ) [ ] { } / \ (1), Z z (2),
# S s (5), b G (6), B (8), g q (9).
LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxyαβγδεζηθλμξπρσφψωΓΔΘΛΞΠΣΦΨΩ#@%&?*=<>~^$€£¥§¶+-×÷±"
_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)
# Handwriting fonts from Debian (fonts-comic-neue, fonts-dancingscript, fonts-levien-typoscript):
# three more hands for training. The test sets in ``mnistlab.testing`` use other ones.
HANDWRITING_FONTS = (
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Bold.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Italic.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Bold.otf",
    "/usr/share/fonts/opentype/levien/TypoScript.otf",
)
FONT_PACKAGES = "fonts-comic-neue fonts-dancingscript fonts-levien-typoscript"  # the Debian packages of those


def handwriting_fonts() -> list[Path]:
    """Those of ``HANDWRITING_FONTS`` that are installed, in order."""
    return [Path(name) for name in HANDWRITING_FONTS if Path(name).is_file()]


def font_paths() -> list[Path]:
    """matplotlib's fonts and the installed handwriting fonts (``handwriting_fonts``)."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in _FONTS if (folder / name).is_file()] + handwriting_fonts()


def _glyph(font: ImageFont.FreeTypeFont, char: str, rng: np.random.Generator) -> np.ndarray:
    """One char as ink (128, 128) in [0, 1]: a pen's weight, a slant and a tilt of its own."""
    im = Image.new("F", (_CANVAS * 2, _CANVAS * 2), 0.0)
    ImageDraw.Draw(im).text((_CANVAS // 2, _CANVAS // 4), char, fill=1.0, font=font)
    ink = np.asarray(im)
    # A pen is thicker than most fonts' strokes: thicken by 0-4 px (at ~60 px glyph height).
    grow = int(rng.integers(0, 5))
    if grow:
        ink = ndimage.grey_dilation(ink, size=(grow, grow))
    # Hands slant: shear by up to 0.3 column per row, about the middle row.
    shear = rng.uniform(-0.3, 0.3)
    matrix = np.array([[1.0, 0.0], [shear, 1.0]])
    ink = ndimage.affine_transform(ink, matrix, offset=(0.0, -shear * _CANVAS), order=1)
    return ndimage.rotate(ink, rng.uniform(-12, 12), reshape=False, order=1)


def _drawn(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    im = Image.new("L", (_CANVAS * 2, _CANVAS * 2), 0)
    ImageDraw.Draw(im).text((_CANVAS // 2, _CANVAS // 4), char, fill=255, font=font)
    return np.asarray(im)


def glyphs(
    chars: str, rng: np.random.Generator, copies: int, fonts: list[Path] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each char in each font (default: ``font_paths()``), ``copies`` times: images (N, 28, 28) uint8
    and each one's index in ``chars``."""
    images, which = [], []
    for path in font_paths() if fonts is None else fonts:
        font = ImageFont.truetype(str(path), size=56)
        missing = _drawn(font, "\uffff")  # what the font draws for a char it lacks (often an empty box)
        for k, char in enumerate(chars):
            drawn = _drawn(font, char)
            if not drawn.any() or np.array_equal(drawn, missing):
                continue
            for _ in range(copies):
                images.append(mnist_digit(_glyph(font, char, rng)))
                which.append(k)
    return np.stack(images), np.asarray(which, np.int64)


def restroked(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MNIST digits (N, 28, 28) uint8 written again with a marker or a hair-thin pen, half each, and read
    back through ``mnist_digit`` as a photo of them would be: (N, 28, 28) uint8.

    Reading redraws a hair line at MNIST's width and gives a marker's wide
    strokes a soft edge; MNIST's writers used neither pen, so without these the
    nets would see such strokes only on non-digits.
    """
    out = [np.zeros((0, 28, 28), np.uint8)]  # (nothing to stack without one)
    for digit in digits:
        # On the 64 px canvas MNIST's strokes are ~6 px wide; a marker's 12-16 px.
        mask = cv2.resize(digit, (_CANVAS, _CANVAS), interpolation=cv2.INTER_LINEAR) > 127
        if rng.random() < 0.5:
            r = int(rng.integers(3, 6))
            pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            ink = cv2.dilate(mask.view(np.uint8), pen).astype(np.float32)
        else:
            ink = thin(mask).astype(np.float32)  # its middle line, one pixel wide
        out.append(mnist_digit(ink)[None])
    return np.concatenate(out)


def restroked_sample(
    digits: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of ``digits`` (N, 28, 28) picked at random (at most all of them), ``restroked``, and their labels."""
    again = rng.choice(len(digits), min(n, len(digits)), replace=False)  # (k,)
    return restroked(digits[again], rng), labels[again]


def flag_ones(ones: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MNIST 1s (N, 28, 28) uint8 written as many hands write a 1: with a flag from the top, down to the
    left, and a third of them with a foot; read back through ``mnist_digit``: (M, 28, 28) uint8, M <= N.

    MNIST's writers seldom flagged a 1, and a net taught on them reads a flagged 1 as a 7. The flag falls
    15-60 degrees below the horizontal and at least 25 degrees off the stem's own lean (a 1 leaning right
    by more than 45 degrees gets none); it is 20-40% of the digit's height, in the stem's pen width.
    """
    out = [np.zeros((0, 28, 28), np.uint8)]  # (nothing to stack without one)
    for digit in ones:
        mask = cv2.resize(digit, (_CANVAS, _CANVAS), interpolation=cv2.INTER_LINEAR) > 127
        rows = np.flatnonzero(mask.any(axis=1))
        if len(rows) < 10:
            continue
        top, bottom = rows[0], rows[-1]
        height, band = bottom - top, max(2, (bottom - top) // 10)
        x_top = float(np.flatnonzero(mask[top : top + band].any(axis=0)).mean())  # the stem's ends
        x_bottom = float(np.flatnonzero(mask[bottom - band : bottom + 1].any(axis=0)).mean())
        lean = np.degrees(np.arctan2(height, x_top - x_bottom))  # 90: upright; under 90: leaning right
        steepest = min(60.0, lean - 25.0)
        if steepest < 20.0:
            continue
        width = max(2, round(2 * stroke_half_width(np.pad(mask, 1))))
        angle = np.radians(rng.uniform(min(25.0, steepest - 5.0), steepest))  # below the horizontal
        length = rng.uniform(0.2, 0.4) * height
        ink = mask.astype(np.uint8)
        start = (x_top, top + width / 2)
        _line(ink, start, (start[0] - length * np.cos(angle), start[1] + length * np.sin(angle)), width)
        if rng.random() < 0.3:
            half, y = rng.uniform(0.15, 0.3) * height, bottom - width / 2
            _line(ink, (x_bottom - half, y), (x_bottom + half, y), width)
        out.append(mnist_digit(ink.astype(np.float32))[None])
    return np.concatenate(out)


def _line(ink: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: int) -> None:
    """A straight stroke ``width`` px wide from ``a`` to ``b`` ((x, y), sub-pixel) drawn into ``ink`` in place."""
    shift = 4  # OpenCV's fixed point: coordinates in 1/2**shift px
    p, q = (round(a[0] * 2**shift), round(a[1] * 2**shift)), (round(b[0] * 2**shift), round(b[1] * 2**shift))
    cv2.line(ink, p, q, 1, width, cv2.LINE_8, shift)


def strokes(rng: np.random.Generator) -> np.ndarray:
    """2-4 random cubic Bezier pen strokes, a polygon outline (crossed half the time), or 2-4 filled boxes and ellipses."""
    im = Image.new("F", (_CANVAS, _CANVAS), 0.0)
    draw = ImageDraw.Draw(im)
    width = int(rng.integers(3, 8))
    kind = rng.integers(4)
    if kind <= 1:
        t = np.linspace(0, 1, 40)[:, None]
        for _ in range(int(rng.integers(2 if kind == 0 else 3, 5))):
            p = rng.uniform(4, _CANVAS - 4, (4, 2))  # control points
            curve = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
            draw.line([tuple(q) for q in curve], fill=1.0, width=width, joint="curve")
    elif kind == 2:
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(12, 30, n)
        pts = [(32 + r * np.cos(a), 32 + r * np.sin(a)) for r, a in zip(radius, angles)]
        # (ImageDraw.polygon draws nothing on a float image when given a width: lines instead.)
        draw.line(pts + [pts[0]], fill=1.0, width=width, joint="curve")
        if rng.random() < 0.5:
            draw.line([pts[0], pts[len(pts) // 2]], fill=1.0, width=width)  # a crossed outline
    else:
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = rng.uniform(0, 40, 2)
            x1, y1 = x0 + rng.uniform(8, 24), y0 + rng.uniform(8, 24)
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=float(rng.uniform(0.5, 1)))
    return np.asarray(im)


def _outline(rng: np.random.Generator, centre: tuple[float, float], radii: tuple[float, float], bumps: int) -> list:
    """(x, y) points of a closed curve round ``centre``: an ellipse with a wobble, scalloped into ``bumps``
    bumps when that is not 0 (a cloud, a bush)."""
    t = np.linspace(0, 2 * np.pi, 90)
    r = 1 + rng.uniform(0.15, 0.25) * np.abs(np.sin(bumps * t / 2)) if bumps else np.ones_like(t)
    for k in (2, 3, 5):  # a hand's circle is not round
        r = r * (1 + rng.uniform(0, 0.04) * np.sin(k * t + rng.uniform(0, 2 * np.pi)))
    return list(zip(centre[0] + radii[0] * r * np.cos(t), centre[1] + radii[1] * r * np.sin(t)))


def _marks(draw: ImageDraw.ImageDraw, rng: np.random.Generator, n: int, radii: tuple[float, float], width: int) -> None:
    """``n`` dots, dashes or arcs inside an outline centred on the 64 px canvas (eyes and a mouth)."""
    for _ in range(n):
        x, y = 32 + rng.uniform(-0.5, 0.5) * radii[0], 32 + rng.uniform(-0.5, 0.5) * radii[1]
        mark, size = rng.integers(3), min(radii)
        if mark == 0:
            s = rng.uniform(2.5, 4)  # big enough to outlast the 28 px box
            draw.ellipse((x - s, y - s, x + s, y + s), fill=1.0)
        elif mark == 1:
            a, s = rng.uniform(0, np.pi), rng.uniform(5, 0.4 * size)
            draw.line([(x - s * np.cos(a), y - s * np.sin(a)), (x + s * np.cos(a), y + s * np.sin(a))], 1.0, width)
        else:
            s, start = rng.uniform(0.3, 0.55) * size, rng.uniform(0, 360)
            draw.arc((x - s, y - s, x + s, y + s), start, start + rng.uniform(90, 200), fill=1.0, width=width)


def doodle(rng: np.random.Generator) -> np.ndarray:
    """A doodle on the 64 px canvas (64, 64) float32: an outline with marks inside or bumps (a face, a cloud),
    a spiral of 1.8-3 turns, a zigzag or wave of 2.5-5 periods, a crown on a trunk of two lines (a tree), or a
    question mark as a hand writes one (taught the fonts' ones alone, the detector let a hand's pass as a 7).

    Each is a digit's shape plus what no digit has: a 0 with eyes, a 6 that goes on
    turning, a 9 on two legs. The test sets' doodles (``mnistlab.testing.glyphs``)
    include these kinds (a smiley, a cloud, a spiral, a tree), skeletons of their
    own in another hand's pens: they were the doodles read as digits most often.
    """
    im = Image.new("F", (_CANVAS, _CANVAS), 0.0)
    draw, width, kind = ImageDraw.Draw(im), int(rng.integers(3, 7)), rng.integers(5)
    if kind == 0:
        radii = (rng.uniform(14, 24), rng.uniform(14, 24))  # up to 30 px with bumps: inside the canvas
        bumps = int(rng.choice([0, 0, 5, 6, 7, 8, 9]))
        draw.line(_outline(rng, (32, 32), radii, bumps), fill=1.0, width=width, joint="curve")
        _marks(draw, rng, int(rng.integers(0 if bumps else 1, 4)), radii, width)  # a plain loop is a 0
    elif kind == 1:
        t = np.linspace(0, rng.uniform(1.8, 3.0) * 2 * np.pi, 120)
        r = rng.uniform(1, 4) + rng.uniform(18, 26) * t / t[-1]
        (sx, sy), a = rng.uniform(0.7, 1.0, 2), rng.choice([-1, 1]) * t + rng.uniform(0, 2 * np.pi)
        draw.line(list(zip(32 + sx * r * np.cos(a), 32 + sy * r * np.sin(a))), fill=1.0, width=width, joint="curve")
    elif kind == 2:
        u = np.linspace(-25, 25, 100)
        phase = 2 * np.pi * rng.uniform(2.5, 5) * (u + 25) / 50
        v = rng.uniform(6, 14) * (np.sin(phase) if rng.random() < 0.5 else 2 / np.pi * np.arcsin(np.sin(phase)))
        a = rng.uniform(-0.6, 0.6)  # its angle
        x, y = 32 + u * np.cos(a) - v * np.sin(a), 32 + u * np.sin(a) + v * np.cos(a)
        draw.line(list(zip(x, y)), fill=1.0, width=width, joint="curve")
    elif kind == 3:
        rx, ry = rng.uniform(12, 24), rng.uniform(10, 15)
        cy = 1.3 * ry + 3  # room above for the bumps
        draw.line(_outline(rng, (32, cy), (rx, ry), int(rng.choice([0, 5, 6, 7]))), 1.0, width, "curve")
        gap = rng.uniform(9, 16)  # apart enough that the two lines stay two at 28 px, not one thick stem
        for x in (32 - gap / 2, 32 + gap / 2):
            draw.line([(x, cy + ry), (x + rng.uniform(-2, 2), rng.uniform(50, 58))], fill=1.0, width=width)
    else:
        _question_mark(draw, rng, width)
    return np.asarray(im)


def _question_mark(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    """A hook from the left over the top and down the right, a stem, and a dot under it, slanted."""
    rx, ry = rng.uniform(10, 18), rng.uniform(10, 16)
    cy = ry + rng.uniform(3, 6)
    t = np.radians(np.linspace(rng.uniform(160, 210), rng.uniform(430, 460), 60))  # y grows down: 270 is the top
    x, y = 32 + rx * np.cos(t), cy + ry * np.sin(t)
    foot = rng.uniform(cy + ry + 8, 48)
    x, y = np.append(x, x[-1] + rng.uniform(-2, 2)), np.append(y, foot)
    slant = rng.uniform(-0.3, 0.3)  # columns per row, about the middle row
    draw.line(list(zip(x + slant * (y - 32), y)), fill=1.0, width=width, joint="curve")
    s, dy = rng.uniform(2, 4), rng.uniform(5, 8)
    cx = x[-1] + slant * (foot + dy - 32)
    draw.ellipse((cx - s, foot + dy - s, cx + s, foot + dy + s), fill=1.0)


def noise(rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.random((_CANVAS, _CANVAS)), rng.uniform(1.5, 5))
    return (field > np.quantile(field, rng.uniform(0.75, 0.95))).astype(np.float32)


def pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two 28x28 digits side by side (overlapping a little) or drawn on top of each other."""
    a, b = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    if rng.random() < 0.5:
        canvas = np.zeros((28, 56), np.float32)
        gap = int(rng.integers(10, 22))
        canvas[:, :28] = a
        canvas[:, gap : gap + 28] = np.maximum(canvas[:, gap : gap + 28], b)
        return canvas
    dy, dx = rng.integers(-4, 5, 2)
    return np.maximum(a, np.roll(b, (dy, dx), axis=(0, 1)))
