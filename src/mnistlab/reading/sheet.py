"""A photo of a sheet lying on a darker table: the sheet found and cut out.

Found on a sampled thumbnail first (most images hold no sheet), then at full
size. Arrays are float32 in [0, 1], shape (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np

from mnistlab.reading.paper import components, dilated, eroded, median_of, middle, sample, select, thumbnail

__all__ = ["isolate_page"]


def isolate_page(grey: np.ndarray, paper: float | None = None) -> np.ndarray:
    """A photo of a sheet lying on a darker table -> the sheet alone.

    The page is the largest region brighter than halfway between the image's
    border and its median (holes such as the digit filled in) when it is large
    (>= 40% of the image), solid (>= 70% of it
    bright: a drawn digit is not), clearly brighter than the rest, which must
    take most of the image border, bounded by a step in brightness (not the
    slope of a vignette), and not drawn (``_drawn``: a bold digit on a small
    canvas passes the rest). It is cut out to its bounding box, shrunk a
    little to leave its edge behind, with whatever is not page set to the paper's
    median. Any other image is returned unchanged. ``paper``: a clean drawing's
    grey (``flat_paper``), its border's and its median: only what is brighter
    may be the sheet's bright part, usually less than 70% of 40% of the image.
    """
    if min(grey.shape) < 64:  # a digit-sized image, not a photo of a sheet
        return grey
    if paper is not None and np.count_nonzero(grey > paper) < 0.4 * 0.7 * grey.size:
        return grey
    # Most images hold no sheet on a table: a thumbnail says so at a fraction of the cost.
    if _page_region(thumbnail(grey, 96, averaged=False)) is None:
        return grey
    page = _page_region(grey)
    if page is None or _drawn(grey, page):
        return grey
    # A sheet's edge is a step; vignetting (a dark corner) is a slope.
    inner = page & ~eroded(page, 3)
    outer = dilated(page, 3) & ~page
    contrast = median_of(grey[page]) - median_of(grey[~page])
    step = median_of(grey[inner]) - median_of(grey[outer])
    if not (contrast > 0.2 and step > 0.5 * contrast):
        return grey
    inset = max(2, int(0.02 * max(grey.shape)))
    page = eroded(page, inset)
    if not page.any():
        return grey
    rows, cols = np.flatnonzero(page.any(axis=1)), np.flatnonzero(page.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.where(page[box], grey[box], np.float32(median_of(grey[page]))).astype(np.float32)


def _page_region(grey: np.ndarray) -> np.ndarray | None:
    """The candidate sheet (holes filled), or None when no region passes as a sheet."""
    # Halfway between the border (the table, if there is one) and the bulk of the image (the sheet).
    bright = grey > (middle(_border(grey)) + median_of(grey)) / 2
    n, labels = components(bright)
    if n == 1:
        return None
    largest = labels == 1 + int(np.argmax(np.bincount(labels[bright], minlength=n)[1:]))
    # The sheet contains its bright part: when that alone already covers too much
    # of the border or too little of the image, no filling in can make a sheet.
    if _share(_border(largest)) > 0.4 or _share(largest) < 0.4 * 0.7:
        return None
    page = _holes_filled(largest)
    area, sheet = np.count_nonzero(largest), np.count_nonzero(page)
    if not (0.4 <= _share(page) <= 0.97 and area >= 0.7 * sheet and _share(~_border(page)) >= 0.6):
        return None
    return page


def _drawn(grey: np.ndarray, page: np.ndarray) -> bool:
    """Whether the candidate sheet ``page`` and what lies around it are each mostly one exact grey (more than
    half of a sample at its median): a shape drawn on a canvas (a fat 8 covers a third of a small canvas, and
    filled in, its holes too), not a sheet photographed on a table, whose paper, writing and table all carry
    the camera's noise. A sheet blown out to pure white on a table crushed to pure black would pass as drawn."""
    return all(_one_grey(sample(grey[region])) for region in (page, ~page))


def _one_grey(some: np.ndarray) -> bool:
    return bool(some.size > 0 and 2 * np.count_nonzero(some == middle(some)) > some.size)


def _holes_filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: the empty regions (4-connected) that do not reach the edge."""
    n, labels = cv2.connectedComponents((~mask).view(np.uint8), connectivity=4)  # label 0: ``mask`` itself
    outside = np.zeros(n, bool)
    outside[_border(labels)] = True
    outside[0] = False
    return ~select(labels, outside)


def _share(mask: np.ndarray) -> float:
    """The fraction of True in a boolean array: ``mask.mean()``, the same number, without its float64 pass."""
    return np.count_nonzero(mask) / mask.size


def _border(a: np.ndarray) -> np.ndarray:
    """The values along the four edges of ``a`` (corners twice)."""
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
