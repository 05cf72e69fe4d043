"""What handwriting is written on, as a user would send it: canvas exports and photos of paper.

``render(ink, rng, surface, height)`` turns ink coverage (H, W) in [0, 1]
into encoded file bytes. Canvas exports are PNG (black on white, white on
black, or strokes on a transparent layer). Paper photos are JPEG: plain,
ruled (a line every 1.1 to 1.5 digit heights, the writing on a line) or
squared (a grid of half to one digit height), with fibre texture, uneven
light, ink of three colours, the sheet turned and sheared a little, blur,
dust and sensor noise. ``height`` is the digit height in px, which sets the
spacing of the lines.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mnistlab.errors import ParameterError
from mnistlab.testing._checks import check_rng
from mnistlab.testing.photos import _canvas, _paper, _place, camera

__all__ = ["SURFACES", "CANVASES", "PAPERS", "check_surface", "digit_height", "render"]

CANVASES = ("canvas-black-on-white", "canvas-white-on-black", "canvas-transparent")
PAPERS = ("paper-plain", "paper-ruled", "paper-squared")
SURFACES = CANVASES + PAPERS

_INKS = (np.array([0.08, 0.08, 0.1]), np.array([0.12, 0.15, 0.45]), np.array([0.3, 0.3, 0.32]))  # black, blue, pencil
_RULES = (np.array([0.35, 0.5, 0.85]), np.array([0.5, 0.5, 0.55]), np.array([0.45, 0.65, 0.8]))


def check_surface(surface: str) -> str:
    """``surface``, or a ValueError naming the surfaces when it is not one of ``SURFACES``."""
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}, expected one of {SURFACES}")
    return surface


def _check_ink(ink: np.ndarray) -> None:
    """A clear error for ink that is not coverage (H, W) in [0, 1]: 0-255 pixels would print as a solid block."""
    ink = np.asarray(ink)
    if ink.ndim != 2 or ink.size == 0 or ink.dtype.kind not in "buif":
        raise ParameterError(
            "ink", f"{{param}} must be coverage (H, W) in [0, 1], not {ink.dtype} of shape {ink.shape}."
        )
    if ink.min() < 0 or ink.max() > 1:
        raise ParameterError(
            "ink",
            f"{{param}} must be coverage in [0, 1], not {ink.min():g} to {ink.max():g}; divide 0-255 pixels by 255.",
        )


def digit_height(surface: str, rng: np.random.Generator) -> int:
    """A digit height in px for one image: drawings on a canvas are larger than writing on a photographed page."""
    return int(rng.integers(100, 301) if check_surface(surface) in CANVASES else rng.integers(60, 261))


def _lines(n: int, first: float, pitch: float, width: float) -> np.ndarray:
    """(n,) coverage of anti-aliased lines ``width`` px thick at first + k * pitch, for pixel rows 0..n-1."""
    d = np.abs((np.arange(n) - first + pitch / 2) % pitch - pitch / 2)
    return np.clip(width / 2 + 0.5 - d, 0.0, 1.0)


def _rules(shape: tuple[int, int], rng: np.random.Generator, surface: str, height: float, baseline: int) -> np.ndarray:
    """Coverage (H, W) of the printed lines of a ruled or squared page (zeros for plain paper)."""
    H, W = shape
    if surface == "paper-ruled":
        pitch = height * rng.uniform(1.1, 1.5)
        rows = _lines(H, baseline + rng.uniform(-0.05, 0.2) * height, pitch, rng.uniform(0.8, 2.2))
        return np.broadcast_to(rows[:, None], shape) * rng.uniform(0.4, 0.85)
    if surface == "paper-squared":
        pitch = height * rng.uniform(0.45, 1.05)
        width = rng.uniform(0.7, 1.6)
        rows = _lines(H, rng.uniform(0, pitch), pitch, width)
        cols = _lines(W, rng.uniform(0, pitch), pitch, width)
        return np.maximum(rows[:, None], cols[None, :]) * rng.uniform(0.3, 0.7)
    return np.zeros(shape)


def _turn(img: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """The page turned by up to 4 degrees and sheared by up to 6%, then its padding cut off: (H, W, 3)."""
    im = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    a = np.radians(rng.uniform(-4, 4))
    shear = rng.uniform(-0.06, 0.06)
    # Output pixel (x, y) samples input (m @ (x - c, y - c) + c): rotation times shear, about the centre.
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1, shear], [0, 1]])
    c = np.array(im.size) / 2
    offset = c - m @ c
    im = im.transform(im.size, Image.Transform.AFFINE, (*m[0], offset[0], *m[1], offset[1]), Image.Resampling.BICUBIC)
    out = np.asarray(im, np.float32) / 255
    return out[pad:-pad, pad:-pad] if pad else out


def _paper_photo(ink: np.ndarray, rng: np.random.Generator, surface: str, height: float) -> bytes:
    # A margin first: turning the sheet must not push the writing off the photo.
    ink = _place(np.pad(ink, int(0.1 * ink.shape[0] + 0.04 * max(ink.shape))), rng, (1.5, 2.6))
    rows = np.flatnonzero(ink.max(1) > 0.05)
    baseline = int(rows[-1]) if rows.size else int(rng.integers(0, ink.shape[0]))
    pad = int(0.08 * max(ink.shape))
    ink = np.pad(ink, pad)
    shape = ink.shape
    paper = _paper(shape, rng)
    lightness = paper.mean(-1, keepdims=True)
    rules = _rules(shape, rng, surface, height, baseline + pad)[..., None]
    paper = paper * (1 - rules) + _RULES[int(rng.integers(len(_RULES)))] * lightness * rules
    a = (ink * rng.uniform(0.75, 1.0))[..., None]
    img = paper * (1 - a) + _INKS[int(rng.integers(len(_INKS)))] * lightness * a
    img = _turn(img, rng, pad)
    return camera(img, rng, blur=1.1)


def render(ink: np.ndarray, rng: np.random.Generator, surface: str, height: float) -> bytes:
    """Encoded file bytes of ``ink`` (H, W) in [0, 1] on ``surface`` (one of ``SURFACES``); digits ``height`` px
    tall."""
    _check_ink(ink)
    check_rng(rng)
    if check_surface(surface) in CANVASES:
        return _canvas(ink, rng, surface)
    return _paper_photo(ink, rng, surface, height)
