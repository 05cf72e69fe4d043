"""MNIST's geometry: the digit's longer side fitted into a 20x20 box, its centre of mass at the centre of 28x28.

LeCun's MNIST digits were size-normalised into 20x20 with their aspect ratio
kept (anti-aliased grey) and then placed in 28x28 by their centre of mass;
``fit_to_box`` and ``center_by_mass`` do the same to a cropped digit.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from mnistlab.data.pixels import float_scale
from mnistlab.errors import InputError
from mnistlab.reading.admission import MAX_PIXELS

__all__ = ["fit_to_box", "center_by_mass", "MAX_SIDE"]

# The longest side a box or canvas may have: a square of it holds no more pixels than the largest image mnistlab
# reads. A box of 10**6 was allocated (a terabyte: the process was killed) or overflowed in a traceback.
MAX_SIDE = math.isqrt(MAX_PIXELS)


def fit_to_box(crop: np.ndarray, box: int = 20) -> np.ndarray:
    """Scale so the longer side is ``box`` px, aspect ratio kept, anti-aliased (Lanczos); max 1."""
    _check_image(crop, "fit_to_box")
    _check_side(box, "fit_to_box's box")
    h, w = crop.shape
    if h == 0 or w == 0:
        return np.zeros((0, 0), np.float32)
    if crop.dtype.kind == "f" and not np.isfinite(crop.sum()):  # a NaN came back as NaN, an infinity as zeros
        raise InputError("fit_to_box got NaN or infinite grey levels; pass finite numbers.")
    scale = box / max(h, w)
    size = (min(box, max(1, round(w * scale))), min(box, max(1, round(h * scale))))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS))
    small = np.clip(small, 0.0, None)  # Lanczos rings slightly below zero
    top = small.max()
    return (small / top if top > 0 else small).astype(np.float32)


def center_by_mass(digit: np.ndarray, size: int = 28) -> np.ndarray:
    """Place ``digit`` (at most size x size, values in [0, 1]) in a size x size uint8
    image so its centre of mass lands on the centre, as MNIST does (whole-pixel shift).

    A digit whose brightest value is over 1.5 is on the 0-255 scale (uint8 grey levels, an MNIST digit's), as
    every mnistlab reader reads pixels (``mnistlab.data.pixels``): each value of 1 and up was full ink."""
    _check_image(digit, "center_by_mass")
    _check_side(size, "center_by_mass's size")
    if max(digit.shape) > size:
        raise InputError(
            f"center_by_mass places a digit of at most {size} x {size} pixels, got {digit.shape[0]} x "
            f"{digit.shape[1]}; fit it to a box first (fit_to_box)."
        )
    out = np.zeros((size, size), np.uint8)
    h, w = digit.shape
    mass = digit.sum()
    if not np.isfinite(mass):
        raise InputError("center_by_mass got NaN or infinite grey levels; pass finite numbers in [0, 1].")
    if h == 0 or w == 0 or mass <= 0:
        return out
    # scipy.ndimage.center_of_mass's own arithmetic (float64 moments over the float32 mass), without its overhead.
    cy = (digit * np.arange(h, dtype=float)[:, None]).sum() / mass
    cx = (digit * np.arange(w, dtype=float)[None, :]).sum() / mass
    top = int(np.clip(round(size / 2 - cy), 0, size - h))
    left = int(np.clip(round(size / 2 - cx), 0, size - w))
    unit = digit / float(float_scale(digit.max()))
    out[top : top + h, left : left + w] = np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8)
    return out


def _check_image(a, step: str) -> None:
    """A 2-d array of numbers, as every geometry step takes (NaN is found by its cheaper sum, where it matters)."""
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype.kind not in "uifb":
        shown = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
        raise InputError(f"{step} takes a 2-d array of grey levels, got {shown}.")


def _check_side(side, what: str) -> None:
    if isinstance(side, bool) or not isinstance(side, int | np.integer) or not 1 <= side <= MAX_SIDE:
        raise InputError(f"{what} must be a whole number of pixels from 1 to {MAX_SIDE:,}, got {side!r}.")
