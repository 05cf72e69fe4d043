"""Labelled test images from hands MNIST never saw, each tagged with its source and surface.

A reader that scores 99% on MNIST can still fail on other people's writing.
These generators make the images such a reader must get right, or refuse:

digit sources (``DIGIT_SOURCES``)
    ``pen``: digits written pen stroke by pen stroke by random writers
    (``mnistlab.testing.writer``: several forms per digit, slant, proportions,
    pens from a 1 px hair line to a felt marker, hollow and cursive strokes);
    ``fonts``: handwriting fonts from Debian packages (``mnistlab.testing.fonts``);
    ``optdigits``: scikit-learn's ``load_digits()``, real 8x8 digits by 43
    writers, blown up smoothly to canvas size.
surfaces (``SURFACES``)
    canvas exports (PNG) and photos of plain, ruled and squared paper (JPEG);
    see ``mnistlab.testing.surfaces``.
non-digits (``NON_DIGIT_SOURCES``)
    letters from the pen and the fonts (none that a careful reader would take
    for a digit), short words, symbols, doodles, Fashion-MNIST test items
    (Debian's ``dataset-fashion-mnist``), empty pages, and two digits where
    one was asked.
numbers with a mark (``marked_number_samples``)
    rows of digits from the pen or the fonts holding a decimal point, a
    comma, a colon, a dash or a minus sign (``MARKS``).

Every function takes a ``numpy.random.Generator`` and gives the same images
for the same seed on machines with the same handwriting fonts installed (a
font left to chance is drawn from those installed). Each image is a
``Sample``: encoded file bytes (PNG or JPEG), its label (the digit as an int;
the number as a string of digits; for non-digits a description such as
``"T"``, ``"doodle:star"``, ``"fashion:coat"``, ``"empty"`` or ``"38"``), and
its source (``"pen"``, ``"fonts"``, ``"optdigits"``; ``"fashion-mnist"`` and
``"none"`` for Fashion-MNIST items and empty pages), surface and style (pen
style, font name, ``"8x8"``; ``"item"`` and ``"empty"`` for those two).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.testing._checks import check_count, check_rng
from mnistlab.testing.fonts import CAPITALS_ONLY, FONT_PACKAGES, FONTS, available_fonts, font_text
from mnistlab.testing.glyphs import DOODLES
from mnistlab.testing.surfaces import SURFACES, check_surface, digit_height, render
from mnistlab.testing.writer import PEN_STYLES, random_writer, write, write_glyph

__all__ = [
    "DIGIT_SOURCES",
    "NON_DIGIT_SOURCES",
    "SURFACES",
    "PEN_STYLES",
    "Sample",
    "digit_samples",
    "number_samples",
    "marked_number_samples",
    "MARKS",
    "non_digit_samples",
]

DIGIT_SOURCES = ("pen", "fonts", "optdigits")
NON_DIGIT_SOURCES = (
    "pen-letters",
    "font-letters",
    "words",
    "symbols",
    "doodles",
    "fashion",
    "empty-pages",
    "digit-pairs",
)
# Letters no careful reader takes for a digit: O o Q D I l i j J Z z S s b G B g q are left out.
LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"
CAPITALS = "ACEFHKLMNPRTUVWXY"
SYMBOLS = "+-x=?&#@%"
WORDS = (
    "cat",
    "the",
    "pen",
    "hey",
    "yes",
    "ink",
    "map",
    "two",
    "five",
    "one",
    "tree",
    "hello",
    "note",
    "day",
    "fun",
    "ok",
)
FASHION = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


class Sample(NamedTuple):
    """One test image: encoded bytes, what it shows, and where it came from."""

    data: bytes
    label: int | str
    source: str
    surface: str
    style: str


def _surface(rng: np.random.Generator, surface: str | None) -> str:
    return str(SURFACES[int(rng.integers(len(SURFACES)))]) if surface is None else surface


def _check_names(source: str, surface: str | None, style: str | None) -> None:
    """Refuse an unknown source, surface or style before any image is drawn (``n`` = 0 included)."""
    if source not in DIGIT_SOURCES:
        raise ValueError(f"unknown source {source!r}, expected one of {DIGIT_SOURCES}")
    if surface is not None:
        check_surface(surface)
    if style is None:
        return
    if source == "pen" and style not in PEN_STYLES:
        raise ValueError(f"unknown pen style {style!r}, expected one of {PEN_STYLES}")
    if source == "fonts" and style not in FONTS:
        raise ValueError(f"unknown font {style!r}, expected one of {tuple(FONTS)}")
    if source == "optdigits":
        raise ValueError(f"optdigits has no styles, but style={style!r} was given; leave style out")


def _lengths(lengths: tuple[int, int]) -> tuple[int, int]:
    """``lengths`` checked: (shortest, longest), whole numbers, 1 <= shortest <= longest."""
    pair = isinstance(lengths, (tuple, list)) and len(lengths) == 2
    whole = pair and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in lengths)
    if not (whole and 1 <= lengths[0] <= lengths[1]):
        raise ValueError(f"lengths must be (shortest, longest) with 1 <= shortest <= longest, not {lengths!r}")
    return int(lengths[0]), int(lengths[1])


def _row_gap(rng: np.random.Generator) -> tuple[float, float]:
    """Space between neighbours in digit heights: sometimes touching, mostly apart."""
    return (-0.06, 0.12) if rng.random() < 0.3 else (0.08, 0.45)


def _font_name(rng: np.random.Generator, style: str | None) -> str:
    """``style`` if given, else a random installed handwriting font (the draw depends on which are installed)."""
    fonts = available_fonts()
    if style is not None:
        if style not in FONTS:
            raise ValueError(f"unknown font {style!r}, expected one of {tuple(FONTS)}")
        return style
    if not fonts:
        raise FileNotFoundError(f"no handwriting fonts are installed; apt-get install {FONT_PACKAGES}")
    return str(fonts[int(rng.integers(len(fonts)))])


# --- optdigits: 8x8 digits by 43 writers ------------------------------------------


@functools.lru_cache(maxsize=1)
def _optdigits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(int)


def _blow_up(img8: np.ndarray, height: float) -> np.ndarray:
    """An 8x8 digit drawn ``height`` px tall: bicubic upsampling, a slight blur against the
    bicubic's ripples, then a mild threshold at 40% ink whose soft edge is 1 to 2 px wide at
    any size (the field rises by up to 1 per 8x8 pixel, i.e. per height / 8 px)."""
    scale = height / 8
    size = round(10 * scale)  # the 8x8 image and a blank pixel around it
    big = Image.fromarray(np.pad(img8, 1).astype(np.float32), "F").resize((size, size), Image.Resampling.BICUBIC)
    big = ndimage.gaussian_filter(np.asarray(big), 0.2 * scale)
    return np.clip((big - 0.4) * height / 8 + 0.5, 0.0, 1.0).astype(np.float32)


def _side_by_side(parts: list[np.ndarray], rng: np.random.Generator, height: float, gap) -> np.ndarray:
    """Inks (h, w) cropped to their columns and set in a row, ``gap`` heights apart, tops a little uneven."""
    parts = [p[:, np.flatnonzero(p.max(0) > 0.05)] for p in parts]
    tops = [int(abs(rng.normal(0, 0.05)) * height) for _ in parts]
    lefts = [0]
    for p in parts[:-1]:
        lefts.append(max(0, lefts[-1] + p.shape[1] + int(rng.uniform(*gap) * height)))
    out = np.zeros((max(t + p.shape[0] for t, p in zip(tops, parts)), lefts[-1] + parts[-1].shape[1]), np.float32)
    for p, top, left in zip(parts, tops, lefts):
        region = out[top : top + p.shape[0], left : left + p.shape[1]]
        np.maximum(region, p, out=region)
    return out


def _optdigits_ink(text: str, rng: np.random.Generator, height: float, gap) -> np.ndarray:
    images, target = _optdigits()
    picks = [rng.choice(np.flatnonzero(target == int(c))) for c in text]
    return _side_by_side([_blow_up(images[i], height) for i in picks], rng, height, gap)


# --- digits and numbers -----------------------------------------------------------


def _ink(
    source: str, text: str, rng: np.random.Generator, height: float, style: str | None, gap
) -> tuple[np.ndarray, str]:
    """Ink of ``text`` from ``source`` and the style it was drawn in. ``gap`` None: the hand's own."""
    if source == "pen":
        writer = random_writer(rng, style)
        return write(text, writer, rng, height, gap=gap), writer.style
    if source == "fonts":
        name = _font_name(rng, style)
        return font_text(text, name, rng, height, gap=gap or _row_gap(rng)), name
    if source == "optdigits":
        return _optdigits_ink(text, rng, height, gap or _row_gap(rng)), "8x8"
    raise ValueError(f"unknown source {source!r}, expected one of {DIGIT_SOURCES}")


def digit_samples(
    source: str, n: int, rng: np.random.Generator, *, surface: str | None = None, style: str | None = None
) -> list[Sample]:
    """``n`` single digits from ``source`` (one of ``DIGIT_SOURCES``), shuffled: image i of the n is labelled
    i % 10, so the labels are 0-9 in equal shares when n is a multiple of 10 (n = 5: 0-4 only).

    ``surface``: one of ``SURFACES`` (default: a random one per image);
    ``style``: a pen style for ``pen`` (``PEN_STYLES``), a font name for ``fonts`` (``fonts.FONTS``), none for
    ``optdigits`` (default: a random one per image).
    """
    _check_names(source, surface, style)
    out = []
    for label in check_rng(rng).permutation(np.arange(check_count(n)) % 10):
        where = _surface(rng, surface)
        height = digit_height(where, rng)
        ink, drawn = _ink(source, str(label), rng, height, style, None)
        out.append(Sample(render(ink, rng, where, height), int(label), source, where, drawn))
    return out


def number_samples(
    source: str, n: int, rng: np.random.Generator, *, surface: str | None = None, style: str | None = None,
    lengths: tuple[int, int] = (3, 6),
) -> list[Sample]:  # fmt: skip
    """``n`` rows of random digits (label: the digits as a string), unevenly spaced, some touching; each row
    ``lengths[0]`` to ``lengths[1]`` digits long. ``source``, ``surface`` and ``style`` as for ``digit_samples``."""
    _check_names(source, surface, style)
    check_rng(rng)
    low, high = _lengths(lengths)
    out = []
    for _ in range(check_count(n)):
        where = _surface(rng, surface)
        height = max(40, int(digit_height(where, rng) * rng.uniform(0.45, 0.75)))
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(low, high + 1))))
        ink, drawn = _ink(source, text, rng, height, style, None)
        out.append(Sample(render(ink, rng, where, height), text, source, where, drawn))
    return out


# Numbers that hold a mark no digit reader reads (a decimal point, a comma, a time's colon, a dash, a minus
# sign): ``read_number`` must not answer their digits confidently without it.
MARKS = {"point": "{}{}.{}{}", "comma": "{}{},{}", "colon": "{}{}:{}{}", "dash": "{}-{}", "minus": "-{}{}"}


def marked_number_samples(
    source: str, n: int, rng: np.random.Generator, *, mark: str | None = None, surface: str | None = None
) -> list[Sample]:
    """``n`` rows of digits holding one of ``MARKS`` (``mark``, default: a random one per row), labelled with
    their text (``"12.50"``); ``source`` ``"pen"`` or ``"fonts"`` (8x8 optdigits have no marks)."""
    if source not in ("pen", "fonts"):
        raise ValueError(f"unknown source {source!r} for marked numbers, expected 'pen' or 'fonts'")
    if mark is not None and mark not in MARKS:
        raise ValueError(f"unknown mark {mark!r}, expected one of {tuple(MARKS)}")
    if surface is not None:
        check_surface(surface)
    check_rng(rng)
    out = []
    for _ in range(check_count(n)):
        pattern = MARKS[mark or str(list(MARKS)[int(rng.integers(len(MARKS)))])]
        text = pattern.format(*(str(d) for d in rng.integers(0, 10, pattern.count("{}"))))
        where = _surface(rng, surface)
        height = max(40, int(digit_height(where, rng) * rng.uniform(0.45, 0.75)))
        ink, drawn = _ink(source, text, rng, height, None, None)
        out.append(Sample(render(ink, rng, where, height), text, source, where, drawn))
    return out


# --- things that are not one digit ------------------------------------------------


@functools.lru_cache(maxsize=1)
def _fashion() -> tuple[np.ndarray, np.ndarray]:
    from mnistlab.data.idx import read_idx

    try:
        return read_idx(f"{_FASHION_DIR}/t10k-images-idx3-ubyte.gz"), read_idx(
            f"{_FASHION_DIR}/t10k-labels-idx1-ubyte.gz"
        )
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Fashion-MNIST is not in {_FASHION_DIR}; apt-get install dataset-fashion-mnist"
        ) from None


def _fashion_ink(rng: np.random.Generator, height: int) -> tuple[np.ndarray, str]:
    images, labels = _fashion()
    i = int(rng.integers(len(images)))
    item = Image.fromarray(images[i].astype(np.float32) / 255, "F").resize((height, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(item), 0, 1), f"fashion:{FASHION[int(labels[i])]}"


def _letters_ink(kind: str, rng: np.random.Generator, height: int) -> tuple[np.ndarray, str, str, str]:
    """Ink, label, source and style of one letter, word, symbol or digit pair."""
    use_pen = kind == "pen-letters" or (kind != "font-letters" and rng.random() < 0.5)
    if kind == "digit-pairs":
        text, gap = "".join(str(d) for d in rng.integers(0, 10, 2)), (-0.05, 0.25)
    elif kind == "words":
        text, gap = str(WORDS[int(rng.integers(len(WORDS)))]), (0.02, 0.15)
    elif kind == "symbols":
        text, gap = SYMBOLS[int(rng.integers(len(SYMBOLS)))], None
    else:
        text, gap = LETTERS[int(rng.integers(len(LETTERS)))], None
    if use_pen:
        # Lead-in and exit strokes would turn a + into a t: symbols are never written cursive.
        style = str(rng.choice([p for p in PEN_STYLES if p != "cursive"])) if kind == "symbols" else None
        ink, style = _ink("pen", text, rng, height, style, gap)
        return ink, text, "pen", style
    name = _font_name(rng, None)
    if name in CAPITALS_ONLY and kind == "font-letters":
        text = CAPITALS[int(rng.integers(len(CAPITALS)))]
    ink, style = _ink("fonts", text, rng, height, name, gap)
    return ink, text.upper() if name in CAPITALS_ONLY else text, "fonts", style


def _non_digit(kind: str, rng: np.random.Generator, where: str) -> Sample:
    height = digit_height(where, rng)
    if kind == "fashion":
        ink, label = _fashion_ink(rng, height)
        return Sample(render(ink, rng, where, height), label, "fashion-mnist", where, "item")
    if kind == "empty-pages":
        ink = np.zeros((height, int(height * rng.uniform(0.6, 3.0))), np.float32)
        return Sample(render(ink, rng, where, height), "empty", "none", where, "empty")
    if kind == "doodles":
        name = str(list(DOODLES)[int(rng.integers(len(DOODLES)))])
        writer = random_writer(rng, str(rng.choice(["hair", "fine", "ballpoint", "marker"])))
        ink = write_glyph(DOODLES[name], writer, rng, height)
        return Sample(render(ink, rng, where, height), f"doodle:{name}", "pen", where, writer.style)
    if kind == "words":
        height = max(40, int(height * rng.uniform(0.45, 0.75)))
    ink, label, source, style = _letters_ink(kind, rng, height)
    return Sample(render(ink, rng, where, height), label, source, where, style)


def non_digit_samples(kind: str, n: int, rng: np.random.Generator, *, surface: str | None = None) -> list[Sample]:
    """``n`` images of ``kind`` (one of ``NON_DIGIT_SOURCES``) that a digit reader must answer "not confident"."""
    if kind not in NON_DIGIT_SOURCES:
        raise ValueError(f"unknown kind {kind!r}, expected one of {NON_DIGIT_SOURCES}")
    if surface is not None:
        check_surface(surface)
    check_rng(rng)
    return [_non_digit(kind, rng, _surface(rng, surface)) for _ in range(check_count(n))]
