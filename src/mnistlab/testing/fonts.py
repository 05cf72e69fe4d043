"""Text in handwriting fonts from Debian packages, as ink: other hands than MNIST's.

The fonts (``apt-get install fonts-dkg-handwriting fonts-humor-sans
fonts-kaushanscript fonts-rufscript``) are used for testing only: the
reader's training draws on other fonts, so these hands stay unseen. Humor
Sans has capitals only (its lower case repeats them). Each character is
drawn on its own, slanted, turned, thickened a little and set on a shared
baseline with uneven spacing, so that a row looks written, not typeset.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnistlab.testing._checks import check_rng

__all__ = ["FONTS", "FONT_PACKAGES", "CAPITALS_ONLY", "available_fonts", "font_text"]

FONTS: dict[str, str] = {
    "dkg": "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "dkg-bold": "/usr/share/fonts/truetype/fifthhorseman/dkgBd.ttf",
    "dkg-italic": "/usr/share/fonts/truetype/fifthhorseman/dkgIt.ttf",
    "dkg-bold-italic": "/usr/share/fonts/truetype/fifthhorseman/dkgBI.ttf",
    "humor-sans": "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "kaushan-script": "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf",
    "rufscript": "/usr/share/fonts/truetype/rufscript/Rufscript010.ttf",
}
CAPITALS_ONLY = ("humor-sans",)
FONT_PACKAGES = "fonts-dkg-handwriting fonts-humor-sans fonts-kaushanscript fonts-rufscript"


def available_fonts() -> tuple[str, ...]:
    """Names of the handwriting fonts installed on this machine."""
    return tuple(name for name, path in FONTS.items() if Path(path).is_file())


@functools.lru_cache(maxsize=64)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONTS[name]
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"handwriting font {name!r} is missing ({path}); install it: apt-get install {FONT_PACKAGES}"
        )
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=16)
def _digit_scale(name: str) -> float:
    """Font size per px of digit height (the ink height of "0" to "9" at size 200)."""
    font = _font(name, 200)
    heights = [font.getbbox(d, anchor="ls")[3] - font.getbbox(d, anchor="ls")[1] for d in "0123456789"]
    return 200 / float(np.median(heights))


def _char(char: str, name: str, rng: np.random.Generator, height: float) -> tuple[np.ndarray, int]:
    """Ink (H, W) of one character on a 2.2-height line box, and the row of its baseline."""
    font = _font(name, max(8, int(round(height * _digit_scale(name)))))
    box_h, base = int(2.2 * height), int(1.5 * height)
    width = int(2.5 * height) + 8
    im = Image.new("L", (width, box_h), 0)
    thick = int(rng.integers(0, int(height // 100) + 2)) // 2  # now and then a slightly heavier pen
    ImageDraw.Draw(im).text(
        (width // 4, base), char, fill=255, font=font, anchor="ls", stroke_width=thick, stroke_fill=255
    )
    # Slant about the baseline and a small turn: output (x, y) samples input (x + s (y - base), y).
    slant = rng.uniform(-0.2, 0.25)
    im = im.transform(im.size, Image.Transform.AFFINE, (1, slant, -slant * base, 0, 1, 0), Image.Resampling.BICUBIC)
    im = im.rotate(rng.uniform(-5, 5), Image.Resampling.BICUBIC, center=(width // 2, base))
    ink = np.asarray(im, np.float32) / 255
    cols = np.flatnonzero(ink.max(0) > 0.05)
    if cols.size == 0:  # a space
        return np.zeros((box_h, int(0.4 * height)), np.float32), base
    return ink[:, cols[0] : cols[-1] + 1], base


def font_text(text: str, name: str, rng: np.random.Generator, height: float, gap=(0.08, 0.4)) -> np.ndarray:
    """Ink (H, W) of ``text`` in font ``name``, digits ``height`` px tall, glyphs ``gap`` heights apart
    (negative: touching), each raised or lowered a little off the baseline."""
    if name not in FONTS:
        raise ValueError(f"unknown font {name!r}, expected one of {tuple(FONTS)}")
    if not text:
        raise ValueError("text must hold something to write, not ''")
    check_rng(rng)
    parts = [_char(c, name, rng, height * rng.uniform(0.93, 1.07)) for c in text]
    line = max(base for _, base in parts) + int(0.15 * height)  # the shared baseline
    tops = [int(max(0, line - base + rng.normal(0, 0.04) * height)) for _, base in parts]
    lefts = [0]
    for p, _ in parts[:-1]:
        lefts.append(max(0, lefts[-1] + p.shape[1] + int(rng.uniform(*gap) * height)))
    out = np.zeros(
        (max(t + p.shape[0] for t, (p, _) in zip(tops, parts)), lefts[-1] + parts[-1][0].shape[1]), np.float32
    )
    for (p, _), top, left in zip(parts, tops, lefts):
        region = out[top : top + p.shape[0], left : left + p.shape[1]]
        np.maximum(region, p, out=region)
    rows, cols = np.flatnonzero(out.max(1) > 0.02), np.flatnonzero(out.max(0) > 0.02)
    if rows.size == 0:
        return out[:1, :1] * 0
    return out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
