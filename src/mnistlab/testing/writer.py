"""Random writers: a hand (slant, proportions, forms of each digit, pen) that writes text as ink.

``random_writer(rng)`` draws one hand; ``write(text, writer, rng, height)``
writes a string of digits, letters, symbols and spaces in it; ``write_glyph``
draws one skeleton (a doodle). The result is ink coverage (H, W) float32 in
[0, 1], digits ``height`` px tall. Pen styles:

- ``hair``: a fountain pen or fine liner, about 1 px wide whatever the size
- ``fine``: a fine liner or a thin brush on a canvas, 1.5 to 4% of the digit height
- ``ballpoint``: ballpoint or gel pen at the usual size, 4 to 9% of the height
- ``marker``: felt marker, 9 to 15% of the height
- ``hollow``: each stroke drawn as its two edges (outlined, "bubble" digits)
- ``cursive``: one-stroke forms with lead-in and exit strokes, letters and
  digits of a word joined
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistlab.testing._checks import check_rng
from mnistlab.testing.glyphs import DIGITS, LOWER, ONE_STROKE, SYMBOLS, UPPER
from mnistlab.testing.pen import draw, parse, smooth_noise, trace

__all__ = ["PEN_STYLES", "Writer", "random_writer", "write", "write_glyph", "glyph_spec"]

PEN_STYLES = ("hair", "fine", "ballpoint", "marker", "hollow", "cursive")
_STYLE_ODDS = (0.15, 0.2, 0.25, 0.15, 0.1, 0.15)


@dataclass
class Writer:
    """One hand. Lengths are in digit heights unless a name says px."""

    style: str
    slant: float  # x shift of the top of a glyph: > 0 leans right
    aspect: float  # width multiplier of every glyph
    rotation: float  # degrees, the whole line
    width: float  # pen width: px for "hair", else a fraction of the height
    outline_px: float  # hollow strokes: width of each edge
    pressure: float  # relative change of the pen width along a stroke
    wobble: float  # how far each control point strays from the skeleton
    ink: float  # ink strength, 1 = full
    gap: tuple[float, float]  # space between the edges of neighbouring strokes
    forms: dict[str, int]  # digit -> index of its form in DIGITS


def random_writer(rng: np.random.Generator, style: str | None = None) -> Writer:
    """A hand with its own pen, slant, proportions and form of each digit."""
    check_rng(rng)
    if style is None:
        style = str(rng.choice(PEN_STYLES, p=_STYLE_ODDS))
    if style not in PEN_STYLES:
        raise ValueError(f"unknown pen style {style!r}, expected one of {PEN_STYLES}")
    width = {
        "hair": rng.uniform(0.8, 1.3),
        "fine": rng.uniform(0.015, 0.04),
        "ballpoint": rng.uniform(0.04, 0.09),
        "marker": rng.uniform(0.09, 0.15),
        "hollow": rng.uniform(0.08, 0.15),
        "cursive": rng.uniform(0.02, 0.07),
    }[style]
    pool = ONE_STROKE if style == "cursive" else {d: tuple(range(len(f))) for d, f in DIGITS.items()}
    touching = rng.random() < 0.3
    return Writer(
        style=style,
        slant=float(rng.uniform(0.15, 0.5) if style == "cursive" else rng.uniform(-0.15, 0.4)),
        aspect=float(rng.uniform(0.75, 1.25)),
        rotation=float(rng.uniform(-6, 6)),
        width=float(width),
        outline_px=float(rng.uniform(1.0, 2.2)),
        pressure=float(rng.uniform(0.0, 0.25)),
        wobble=float(rng.uniform(0.006, 0.03)),
        ink=float(rng.uniform(0.6, 1.0)),
        gap=(0.12, 0.35) if style == "cursive" else (-0.04, 0.08) if touching else (0.08, 0.45),
        forms={d: int(rng.choice(forms)) for d, forms in pool.items()},
    )


def glyph_spec(char: str, writer: Writer) -> str:
    """The skeleton this writer uses for ``char`` (a digit, letter or symbol)."""
    if char in DIGITS:
        return DIGITS[char][writer.forms[char]]
    for table in (UPPER, LOWER, SYMBOLS):
        if char in table:
            return table[char]
    raise ValueError(f"no skeleton for {char!r}")


def _glyph_paths(spec: str, writer: Writer, rng: np.random.Generator) -> list[np.ndarray]:
    """One glyph's paths in glyph units, its skeleton perturbed by the hand's wobble."""
    paths = []
    for points, corners in parse(spec):
        # Neighbouring control points stray together: the shape bends, it does not bristle.
        points = points + np.column_stack([smooth_noise(rng, len(points), writer.wobble, 1) for _ in range(2)])
        path = trace(points, corners)
        path[:, 0] *= writer.aspect
        paths.append(path)
    return paths


def _join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A cursive connecting stroke from the end of path a to the start of path b, dipping to the baseline."""
    mid = (a[-1] + b[0]) / 2
    mid[1] = max(mid[1], 0.92)
    return trace(np.array([a[-1], mid, b[0]]), np.zeros(3, bool))


def _side(glyph: list[np.ndarray], x: float) -> float:
    """Where x lies across the glyph's width: 0 at its left edge, 1 at its right."""
    xs = np.concatenate([p[:, 0] for p in glyph])
    return float((x - xs.min()) / max(np.ptp(xs), 1e-6))


def _cursive(words: list[list[list[np.ndarray]]], rng: np.random.Generator) -> list[np.ndarray]:
    """Per word: glyphs joined end to start where a pen would, a lead-in and a tail where they fit.

    A pen joins a glyph that ends on its right side to one that starts on its
    left; from a 3's end (bottom left) to a 0's start (top) it would cross the
    3, so it lifts. A lead-in comes from the lower left, so only into a start on
    the left; a tail runs off to the right, so only from an end on the right.
    """
    paths = []
    for glyphs in words:
        first, last = glyphs[0][0], glyphs[-1][-1]
        if _side(glyphs[0], first[0, 0]) <= 0.5:
            lead = first[0] + np.array([-rng.uniform(0.05, 0.12), rng.uniform(0.05, 0.12)])
            paths.append(trace(np.array([lead, first[0]]), np.zeros(2, bool)))
        for g, h in zip(glyphs[:-1], glyphs[1:]):
            if _side(g, g[-1][-1, 0]) >= 0.45 and _side(h, h[0][0, 0]) <= 0.55:
                paths.append(_join(g[-1], h[0]))
        if _side(glyphs[-1], last[-1, 0]) >= 0.5:
            tail = last[-1] + np.array([rng.uniform(0.08, 0.2), -rng.uniform(0.02, 0.15)])
            paths.append(trace(np.array([last[-1], (last[-1] + tail) / 2 + [0, 0.04], tail]), np.zeros(3, bool)))
        paths += [p for g in glyphs for p in g]
    return paths


def _layout(
    specs: list[str | None], writer: Writer, rng: np.random.Generator, gap=None
) -> list[list[list[np.ndarray]]]:
    """Glyph paths placed left to right, per word (a None spec is a space); glyph units."""
    gap = writer.gap if gap is None else gap
    pen = 0.0 if writer.style == "hair" else writer.width  # gaps are between stroke edges, not centre lines
    words: list[list[list[np.ndarray]]] = [[]]
    x = 0.0
    for spec in specs:
        if spec is None:
            x += rng.uniform(0.35, 0.6)
            words.append([])
            continue
        paths = _glyph_paths(spec, writer, rng)
        left = min(float(p[:, 0].min()) for p in paths)
        right = max(float(p[:, 0].max()) for p in paths)
        dy, scale = rng.normal(0, 0.035), rng.uniform(0.92, 1.08)
        # Scale about the baseline (y = 1) so that glyphs stay on the line.
        words[-1].append(
            [np.column_stack([x + (p[:, 0] - left) * scale, 1 + (p[:, 1] - 1) * scale + dy]) for p in paths]
        )
        x += (right - left) * scale + pen + max(rng.uniform(*gap), -0.5 * (right - left) * scale)
    return [w for w in words if w]


def _pen_widths(paths: list[np.ndarray], writer: Writer, rng: np.random.Generator, height: float) -> list[np.ndarray]:
    base = writer.width if writer.style == "hair" else max(1.0, writer.width * height)
    widths = []
    for p in paths:
        w = base * np.clip(1 + smooth_noise(rng, len(p), writer.pressure, 25), 0.4, 1.6)
        # Now and then a fine pen lands and lifts: thinner at both ends of the stroke.
        if writer.style in ("hair", "fine", "ballpoint") and len(p) > 8 and rng.random() < 0.4:
            ramp = np.minimum(1.0, np.minimum(np.arange(len(p)), np.arange(len(p))[::-1]) / (0.15 * len(p)))
            w = w * (0.5 + 0.5 * ramp)
        widths.append(np.maximum(w, 0.7))
    return widths


def _ink(paths: list[np.ndarray], writer: Writer, rng: np.random.Generator, height: float) -> np.ndarray:
    """Hand transform (slant about the baseline, rotation), tremor, then the pen."""
    turn = np.radians(writer.rotation)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    placed = []
    for p in paths:
        q = p.copy()
        q[:, 0] += writer.slant * (1 - q[:, 1])
        q = q @ rot.T
        tremor = 0.15 * writer.wobble
        q += np.column_stack([smooth_noise(rng, len(q), tremor, 3), smooth_noise(rng, len(q), tremor, 3)])
        placed.append(q * height)
    low = np.min([q.min(0) for q in placed], axis=0)
    placed = [q - low for q in placed]
    widths = _pen_widths(placed, writer, rng, height)
    levels = [writer.ink * np.clip(1 + smooth_noise(rng, len(q), 0.12, 20), 0.45, 1.0) for q in placed]
    outline = writer.outline_px if writer.style == "hollow" else None
    return draw(placed, widths, levels, outline=outline)


def write(text: str, writer: Writer, rng: np.random.Generator, height: float, *, gap=None) -> np.ndarray:
    """Ink (H, W) of ``text`` (digits, letters, symbols, spaces) in this hand, digits ``height`` px tall.

    ``gap``: (low, high) space between glyphs in digit heights, instead of the hand's own.
    """
    if not text.strip(" "):
        raise ValueError(f"text must hold something to write, not {text!r}")
    check_rng(rng)
    words = _layout([None if c == " " else glyph_spec(c, writer) for c in text], writer, rng, gap)
    paths = _cursive(words, rng) if writer.style == "cursive" else [p for w in words for g in w for p in g]
    return _ink(paths, writer, rng, height)


def write_glyph(spec: str, writer: Writer, rng: np.random.Generator, height: float) -> np.ndarray:
    """Ink of one skeleton (a doodle, say) in this hand, ``height`` px tall."""
    paths = [p for w in _layout([spec], writer, rng) for g in w for p in g]
    return _ink(paths, writer, rng, height)
