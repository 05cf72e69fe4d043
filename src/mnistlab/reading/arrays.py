"""Images given as numpy arrays, and the pixel arithmetic every decoded image shares: scale, luma, transparency
composited, area-averaged reduction."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from mnistlab.data.pixels import UNDO_NORMALISING, float_scale, normalised_paper
from mnistlab.errors import ImageError
from mnistlab.reading.admission import check_pixels, check_strip

__all__ = ["array_to_grey", "unit_scale", "luma", "composite", "fitted_size", "reduce_array"]


def _scale_integers(a: np.ndarray) -> np.ndarray:
    """Integer pixels -> [0, 1]; deeper than 8 bits uses the smallest power-of-two range holding the data, and
    0s and 1s alone are a mask (``(img > 128).astype(np.uint8)``), read as bools are, not as a black page."""
    a = a.astype(np.float64)
    top = float(a.max()) if a.size else 0.0
    if top <= 255 and top != 1:
        return a / 255.0
    return a / (2.0 ** np.ceil(np.log2(top + 1)) - 1)


def unit_scale(a: np.ndarray, what: str) -> np.ndarray:
    """Pixels (bool, integers or floats) -> float64 on the 0-1 scale, not yet clipped; ``ImageError`` for values
    no image's pixels take: negative integers, NaN or infinity, and floats below 0 by more than half the scale
    (a resampled image undershoots 0 a little, as it overshoots 1; -255..0 or -1..1 is no image's)."""
    if a.dtype == bool:
        return a.astype(np.float64)
    if a.dtype.kind in "ui":
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            raise ImageError(f"{what} holds negative values (down to {a.min()}); pass pixel values of 0 or more.")
        return _scale_integers(a)
    if not np.isfinite(a).all():
        raise ImageError(f"{what} contains NaN or infinite values; pass finite pixel values.")
    scale = float(float_scale(a.max()))
    if a.min() < -0.5 * scale:
        raise ImageError(
            f"{what} holds values down to {a.min():.4g}, far below 0 (paper); pass pixel values from 0 to 1 or 0 "
            "to 255, not normalised ones."
        )
    paper = normalised_paper(a)  # PyTorch's MNIST normalisation: read as 0-255, a blank page ("no ink found")
    if paper is not None:
        raise ImageError(
            f"{what} looks normalised: most of its pixels are {paper:.4g}, below 0 (paper); {UNDO_NORMALISING}"
        )
    return a.astype(np.float64) / scale


def luma(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2, as Pillow's convert("L").
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# Opaque pixels no further apart in grey than this are one colour: a drawing's ink, not a photo's paper and ink.
_ONE_COLOUR = 1 / 16


def composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten transparency onto the colour that reads as background.

    A canvas export has a transparent background and opaque strokes: the strokes
    are the minority, so the background becomes the contrasting colour (white
    under dark ink, black under light ink); white is put under a dark shape
    of one colour however much of it is opaque (a bold digit cropped to its
    strokes: its picture is its alpha). Any other mostly opaque image (a
    cut-out photo) gets its own median colour behind the transparent parts.
    """
    if alpha.min() >= 0.999:
        return grey
    opaque = alpha > 0.5
    n_opaque = np.count_nonzero(opaque)
    out = alpha * grey  # the blend's first term, and the weights of the ink's level
    if 2 * n_opaque < opaque.size:  # most of it transparent
        # Each pixel weighed by its opacity: strokes nowhere half opaque (a soft brush) are told light or dark too.
        ink_level = float(out.sum() / max(alpha.sum(), 1e-6))
        background = 1.0 if ink_level < 0.5 else 0.0
    else:
        background = float(np.median(grey[opaque]))
        # Behind a dark shape of one colour its own colour left a blank page ("no ink found"); a light one is
        # more often a blank sheet than a white digit, and stays blank.
        if background < 0.5 and np.ptp(grey[opaque]) <= _ONE_COLOUR:
            background = 1.0
    if background == 1.0:  # (1 - alpha) * 1: the very numbers, one pass fewer
        out += 1.0 - alpha
    elif background != 0.0:  # (1 - alpha) * 0 adds nothing
        out += (1.0 - alpha) * background
    return out


def array_to_grey(a: np.ndarray, side_for: Callable[[int, int], int]) -> np.ndarray:
    """An image given as an array (H, W), (H, W, 1) or (1, H, W), (H, W, 2) (grey and alpha), (H, W, 3) or
    (H, W, 4) -> float32 grey (H', W') in [0, 1], its longer side reduced (area average) to
    ``side_for(width, height)``.

    A big 8-bit photo (``cv2.imread``'s, a camera's frame) is reduced while it is still 8-bit: in float64 first,
    a 12-megapixel one took 1.5 s and 550 MiB more, where the same photo as a JPEG file took 0.05 s.
    """
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[0] == 1 and a.shape[-1] not in (2, 3, 4):  # (1, H, W): PyTorch's grey image
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (2, 3, 4):  # (C, H, W): PyTorch's colour one
        raise ImageError(
            f"Cannot use an array of shape {a.shape} as an image: its colour channels come first; move them last "
            "with np.moveaxis(a, 0, -1), or pass the image's file."
        )
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        raise ImageError(
            f"Cannot use an array of shape {a.shape} as an image; expected (H, W), (H, W, 2), (H, W, 3) or (H, W, 4)."
        )
    check_pixels((a.shape[1], a.shape[0]), "the image array")
    check_strip((a.shape[1], a.shape[0]), "the image array")
    if a.dtype.kind not in "buif":
        raise ImageError(f"Cannot use an array of dtype {a.dtype} as an image; expected integers or floats.")
    side = side_for(a.shape[1], a.shape[0])
    # Not an RGBA one (transparency is composited at full size) nor a mask of 0s and 1s (``_scale_integers``).
    if a.dtype == np.uint8 and (a.ndim == 2 or a.shape[-1] == 3) and max(a.shape[:2]) > side and a.max() > 1:
        a = cv2.resize(a, fitted_size(a.shape[1], a.shape[0], side), interpolation=cv2.INTER_AREA)
    a = np.clip(unit_scale(a, "The image array"), 0.0, 1.0)
    if a.ndim == 2:
        grey = a
    elif a.shape[-1] == 2:  # grey and alpha: ``np.asarray`` of an "LA" image
        grey = composite(a[..., 0], a[..., 1])
    else:
        grey = composite(luma(a), a[..., 3]) if a.shape[-1] == 4 else luma(a)
    return np.clip(reduce_array(grey.astype(np.float32), side), 0.0, 1.0)


def fitted_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def reduce_array(grey: np.ndarray, max_side: int) -> np.ndarray:
    """A float32 grey array area-averaged down to ``max_side`` (unchanged when it already fits)."""
    h, w = grey.shape
    if max(h, w) <= max_side:
        return grey
    small = Image.fromarray(grey, mode="F").resize(fitted_size(w, h, max_side), Image.Resampling.BOX)
    return np.asarray(small)
