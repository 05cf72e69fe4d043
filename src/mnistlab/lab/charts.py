"""What the result charts share: a figure outside pyplot, the accuracy-against-fit-time axes, a grid cell's
title that stays readable, text inks that read on a coloured cell, and a bounded view of large images.

Figures get an explicit Agg canvas rather than pyplot's: no global figure
state, no GUI backend, and safe to draw from web-server threads.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "MAX_DRAWN_SIDE",
    "drawn",
    "new_figure",
    "style_time_axes",
    "cell_title",
    "text_inks",
    "contrast",
    "spread_labels",
]

DPI = 100
SMALLEST = 7.0  # points: a cell's title in smaller type is not read on a screen at 100 dpi
MAX_DRAWN_SIDE = 128  # pixels a side of a digit is drawn with: a grid's cell is 0.9 inch, 90 pixels at DPI


def drawn(images: np.ndarray) -> np.ndarray:
    """``images`` (N, H, W) as they are drawn: every k-th row and column (a view), k the least that leaves at
    most ``MAX_DRAWN_SIDE`` pixels a side. A folder of 2,000 x 2,000 images drew them whole, every pixel made
    a float (``show --first 100``: 73 s and 4.7 GB for a 90-pixel cell each, ``--ascii`` 2,000 lines)."""
    step = math.ceil(max(images.shape[1:], default=1) / MAX_DRAWN_SIDE)
    return images if step <= 1 else images[:, ::step, ::step]


def new_figure(width: float, height: float) -> Figure:
    """A ``width`` x ``height`` inch figure on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def style_time_axes(ax, x_label: str, y_label: str) -> None:
    """Log-scale fit-time x axis, labels, title, grid and an open frame: the look of every accuracy-vs-time chart."""
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title("Test accuracy against fit time")
    ax.grid(True, which="both", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def cell_title(head: str, sep: str, tail: str, room: float, largest: float) -> tuple[str, float]:
    """A grid cell's title ``head + sep + tail`` and its size in points: on one line where that line fits the
    cell (``room``: characters times points) at ``SMALLEST`` points or more, else broken after ``sep`` onto two
    lines, so that two long class names ("Sneaker→Ankle boot") stay readable instead of shrinking to a smudge."""
    one = f"{head}{sep}{tail}"
    if room / len(one) >= SMALLEST:
        return one, min(largest, room / len(one))
    lines = (f"{head}{sep}".rstrip(), tail)
    return "\n".join(lines), min(largest, max(SMALLEST, room / max(map(len, lines))))  # room is a guess: 7 fits


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG's relative luminance of sRGB colours 0-1 (the last axis: red, green, blue)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def contrast(a, b) -> np.ndarray:
    """WCAG's contrast ratio of two sRGB colours 0-1 (1 to 21; 4.5 and up reads as body text)."""
    la, lb = _luminance(np.asarray(a, float)[..., :3]), _luminance(np.asarray(b, float)[..., :3])
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def text_inks(colors) -> np.ndarray:
    """For cells of ``colors`` (RGBA 0-1, last axis), the text colour that reads on each: "black" or "white",
    whichever contrasts more (4.5:1 or more on any colour)."""
    colors = np.asarray(colors, float)
    return np.where(contrast(colors, (0, 0, 0)) >= contrast(colors, (1, 1, 1)), "black", "white")


def spread_labels(log_x, y, labels, decades_per_inch, units_per_inch) -> list[float]:
    """Label heights (data units) such that labels right of their points never overlap.

    Points are placed from lowest to highest accuracy; a label is pushed up
    above any placed label it would collide with (8 pt text: ~0.17 in a line,
    ~0.065 in a character).
    """
    line = 0.17 * units_per_inch
    placed: list[tuple[float, float, float]] = []  # (label start log-x, label end log-x, label y)
    out = [0.0] * len(y)
    for i in np.argsort(y, kind="stable"):
        start = log_x[i] + 0.1 * decades_per_inch
        end = start + len(labels[i]) * 0.065 * decades_per_inch
        ty = float(y[i])
        for p_start, p_end, p_y in sorted(placed, key=lambda p: p[2]):
            if start < p_end and p_start < end and abs(ty - p_y) < line:
                ty = p_y + line
        placed.append((start, end, ty))
        out[i] = ty
    return out
