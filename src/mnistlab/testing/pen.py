"""A small pen: glyph skeletons -> smooth paths -> anti-aliased ink, stroke by stroke.

A glyph is a string of strokes separated by ``/``. A stroke is a comma-separated
list of points the pen passes through smoothly (``x y``), corners where it turns
sharply (``x y c``) and arcs (``a cx cy rx ry a0 a1``: angles in degrees,
clockwise on screen from +x, so 90 is straight down; a trailing ``c`` makes the
arc's last point a corner). Units: the glyph is 1 tall, y points down, and the
baseline is y = 1.

Paths are arrays (N, 2) of (x, y). ``draw`` turns them into ink coverage
(H, W) float32 in [0, 1], drawn 4x larger with round pen tips and reduced by
box averaging, so that even a 1 px hair line comes out anti-aliased.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = ["parse", "trace", "draw", "smooth_noise"]

_SUPERSAMPLE = 4
_ARC_STEP = 30.0  # degrees between the control points of an arc


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> list[tuple[float, float]]:
    steps = max(2, int(np.ceil(abs(a1 - a0) / _ARC_STEP)) + 1)
    t = np.radians(np.linspace(a0, a1, steps))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in t]


def parse(spec: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Strokes of a glyph: per stroke, control points (K, 2) and corner flags (K,)."""
    strokes = []
    for stroke in spec.split("/"):
        points: list[tuple[float, ...]] = []
        corners: list[bool] = []
        for token in stroke.split(","):
            parts = token.split()
            corner = parts[-1] == "c"
            numbers = [float(p) for p in parts[1 if parts[0] == "a" else 0 : len(parts) - corner]]
            new = _arc(*numbers) if parts[0] == "a" else [tuple(numbers)]
            points += new
            corners += [False] * (len(new) - 1) + [corner]
        strokes.append((np.array(points, dtype=np.float64), np.array(corners, dtype=bool)))
    return strokes


def _catmull_rom(p: np.ndarray, per_unit: float) -> np.ndarray:
    """A smooth curve (M, 2) through the points p (K, 2), about ``per_unit`` samples per unit length."""
    if len(p) < 3:
        n = max(2, int(np.linalg.norm(p[-1] - p[0]) * per_unit))
        return p[0] + np.linspace(0, 1, n)[:, None] * (p[-1] - p[0])
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        n = max(2, int(np.linalg.norm(p2 - p1) * per_unit))
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        out.append(
            0.5
            * ((2 * p1) + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
        )
    out.append(p[-1:])
    return np.vstack(out)


def trace(points: np.ndarray, corners: np.ndarray, per_unit: float = 120.0) -> np.ndarray:
    """A stroke's path (N, 2): smooth through its points, split at its corners."""
    cuts = [0, *np.flatnonzero(corners[1:-1]) + 1, len(points) - 1]
    pieces = [_catmull_rom(points[a : b + 1], per_unit) for a, b in zip(cuts[:-1], cuts[1:])]
    return np.vstack([pieces[0]] + [piece[1:] for piece in pieces[1:]])


def _draw_paths(paths, widths, intensities, shape: tuple[int, int]) -> np.ndarray:
    """Paths in supersampled pixels, drawn with round tips: coverage (H, W) at full size."""
    im = Image.new("L", (shape[1] * _SUPERSAMPLE, shape[0] * _SUPERSAMPLE), 0)
    pen = ImageDraw.Draw(im)
    for path, width, level in zip(paths, widths, intensities):
        xy = path * _SUPERSAMPLE
        w = np.maximum(width * _SUPERSAMPLE, 1.0)
        for k in range(len(xy)):
            fill = int(round(255 * level[k]))
            r = w[k] / 2
            pen.ellipse((xy[k, 0] - r, xy[k, 1] - r, xy[k, 0] + r, xy[k, 1] + r), fill=fill)
            if k + 1 < len(xy):
                pen.line((tuple(xy[k]), tuple(xy[k + 1])), fill=fill, width=max(1, int(round(w[k]))))
    return np.asarray(im.reduce(_SUPERSAMPLE), np.float32) / 255.0


def draw(paths, widths, intensities=None, *, outline: float | None = None) -> np.ndarray:
    """Ink coverage (H, W) in [0, 1] for paths already in pixels (x, y) >= 0.

    ``widths``: per path, the pen width in pixels at each point (N,);
    ``intensities``: per path, ink strength at each point in [0, 1] (a pen
    pressed lightly or running dry). ``outline``: draw each stroke as its two
    edges, this many pixels wide (hollow, "bubble" lettering).
    """
    if intensities is None:
        intensities = [np.ones(len(p)) for p in paths]
    margin = max(float(np.max(w)) for w in widths) / 2 + 3
    paths = [p + margin for p in paths]
    top = np.max([p.max(0) for p in paths], axis=0)
    shape = (int(np.ceil(top[1] + margin)), int(np.ceil(top[0] + margin)))
    ink = _draw_paths(paths, widths, intensities, shape)
    if outline is not None:
        inner = [np.maximum(w - 2 * outline, 0.0) for w in widths]
        core = _draw_paths(paths, inner, [np.ones(len(p)) for p in paths], shape)
        ink = np.clip(ink - core, 0.0, 1.0)
    return ink


def smooth_noise(rng: np.random.Generator, n: int, scale: float, sigma: float) -> np.ndarray:
    """n values of Gaussian noise smoothed over ``sigma`` samples, standard deviation ``scale``."""
    pad = 4 * int(np.ceil(sigma)) + 1
    smooth = ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma)[pad : pad + n]
    impulse = np.zeros(2 * pad + 1)
    impulse[pad] = 1.0
    # The filter's gain on white noise, so that short runs are not inflated by their own small spread.
    gain = float(np.sqrt(np.sum(ndimage.gaussian_filter1d(impulse, sigma) ** 2)))
    return smooth * scale / gain
