"""Photos, scans and canvas drawings of handwriting -> MNIST-style 28x28 digits.

MNIST digits are white ink on black, anti-aliased grey, the longer side fitted
into a 20x20 box with the aspect ratio kept, and placed in 28x28 so that the
centre of mass sits at the centre. A photo is none of that, which is why "resize
it to 28x28 and flatten" gives near-random answers. ``to_mnist`` runs the steps
below, each a function of its own:

    load_image -> to_grey -> isolate_page -> decide_polarity -> remove_background -> binarise
    -> remove_rules -> drop_specks -> clean_ink -> crop_to_ink -> normalize_stroke_width
    -> fit_to_box -> center_by_mass

``segment_digits`` runs the same front end on a row of digits, groups the ink
into digits (broken strokes merged) and returns one 28x28 image per digit, left
to right. Working arrays are float32 in [0, 1], shape (H, W).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.reading.decode import to_grey
from mnistlab.reading.strokes import normalize_stroke_width, remove_rules

__all__ = [
    "isolate_page",
    "decide_polarity",
    "estimate_background",
    "remove_background",
    "binarise",
    "drop_specks",
    "clean_ink",
    "crop_to_ink",
    "fit_to_box",
    "center_by_mass",
    "to_mnist",
    "mnist_digit",
]

_EIGHT = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1]], bool)  # 8-connectivity


# --- finding the ink ----------------------------------------------------------


def isolate_page(grey: np.ndarray) -> np.ndarray:
    """A photo of a sheet lying on a darker table -> the sheet alone.

    The page is the largest region brighter than halfway between the image's
    border and its median (holes such as the digit filled in) when it is large
    (>= 40% of the image), solid (>= 70% of it
    bright: a drawn digit is not), clearly brighter than the rest, which must
    take most of the image border, and bounded by a step in brightness (not the
    slope of a vignette). It is cut out to its bounding box, shrunk a
    little to leave its edge behind, with whatever is not page set to the paper's
    median. Any other image is returned unchanged.
    """
    if min(grey.shape) < 64:  # a digit-sized image, not a photo of a sheet
        return grey
    # Halfway between the border (the table, if there is one) and the bulk of the image (the sheet).
    rim = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    bright = grey > (np.median(rim) + _median(grey)) / 2
    labels, n = ndimage.label(bright)
    if n == 0:
        return grey
    largest = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    page = ndimage.binary_fill_holes(largest)
    border = np.concatenate([page[0], page[-1], page[:, 0], page[:, -1]])
    if not (0.4 <= page.mean() <= 0.97 and largest.sum() >= 0.7 * page.sum() and (~border).mean() >= 0.6):
        return grey
    # A sheet's edge is a step; vignetting (a dark corner) is a slope.
    inner = page & ~ndimage.binary_erosion(page, iterations=3)
    outer = ndimage.binary_dilation(page, iterations=3) & ~page
    contrast = _median(grey[page]) - _median(grey[~page])
    step = _median(grey[inner]) - _median(grey[outer])
    if not (contrast > 0.2 and step > 0.5 * contrast):
        return grey
    inset = max(2, int(0.02 * max(grey.shape)))
    page = ndimage.binary_erosion(page, iterations=inset)
    if not page.any():
        return grey
    rows, cols = np.flatnonzero(page.any(axis=1)), np.flatnonzero(page.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.where(page[box], grey[box], np.float32(_median(grey[page]))).astype(np.float32)


def estimate_background(grey: np.ndarray, ink_is_dark: bool | None = None, *, degree: int = 3) -> np.ndarray:
    """A smooth estimate of the paper under uneven lighting, same shape as ``grey``.

    A degree-3 polynomial surface is fitted to a 64-px thumbnail by trimmed least
    squares: pixels far from the fit on the ink side (either side when the
    polarity is not known yet) are left out and the fit repeated. Unlike a
    median filter it has no window to out-grow and no bias at the borders.
    """
    h, w = grey.shape
    scale = min(1.0, 64 / max(h, w))
    small = grey
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BOX))
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    vy, vx = _powers(small.shape[0], degree), _powers(small.shape[1], degree)
    design = np.stack([np.outer(vy[:, j], vx[:, i]).ravel() for i, j in terms], axis=1)
    z = small.ravel().astype(np.float64)
    # Start from a flat background at the median: ink is the minority, so it
    # never drags the first fit towards itself.
    coef = np.zeros(len(terms))
    coef[0] = np.median(z)
    for _ in range(5):
        r = z - design @ coef
        sigma = _robust_sigma(r) + 1e-3
        if ink_is_dark is None:
            keep = np.abs(r) < 2.5 * sigma
        elif ink_is_dark:
            keep = r > -2.5 * sigma
        else:
            keep = r < 2.5 * sigma
        if keep.sum() < design.shape[1] * 4:
            break
        a = design[keep]
        coef = np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ z[keep])
    # The surface is sum coef * x^i * y^j: evaluate it separably, (h, d+1) @ (d+1, d+1) @ (d+1, w).
    c = np.zeros((degree + 1, degree + 1))
    for (i, j), value in zip(terms, coef):
        c[j, i] = value
    return (_powers(h, degree) @ c @ _powers(w, degree).T).astype(np.float32)


def _powers(n: int, degree: int) -> np.ndarray:
    """(n, degree + 1): t^0 .. t^degree for n points t evenly spaced in [-1, 1]."""
    t = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return t[:, None] ** np.arange(degree + 1)[None, :]


def _sample(a: np.ndarray, n: int = 8192) -> np.ndarray:
    """At most about ``n`` evenly spaced values of ``a``: plenty for a median, at a fraction of its cost."""
    flat = a.ravel()
    return flat[:: max(1, flat.size // n)]


def _median(a: np.ndarray) -> float:
    return float(np.median(_sample(a)))


def _robust_sigma(r: np.ndarray) -> float:
    """Noise level from the median absolute deviation."""
    r = _sample(r)
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def decide_polarity(grey: np.ndarray) -> bool:
    """True when the ink is darker than the paper, False for light ink on dark.

    The ink is the minority that stands out from the smooth background: compare
    how much mass lies more than 4 noise-sigmas below and above it.
    """
    r = grey - estimate_background(grey)
    sigma = max(_robust_sigma(r), 1.0 / 255)
    dark = np.clip(-r - 4 * sigma, 0, None).sum()
    light = np.clip(r - 4 * sigma, 0, None).sum()
    return bool(dark >= light)


def remove_background(grey: np.ndarray, ink_is_dark: bool) -> np.ndarray:
    """Ink strength (H, W): about 0 on the paper (its noise on either side), larger where the ink is.

    Dark ink is measured relative to the local paper brightness, which cancels
    multiplicative lighting (shade, vignetting); light ink by its excess over
    the background.
    """
    bg = estimate_background(grey, ink_is_dark)
    if ink_is_dark:
        ink = (bg - grey) / np.maximum(bg, 0.05)
    else:
        ink = (grey - bg) / np.maximum(1.0 - bg, 0.05)
    return ink.astype(np.float32)  # signed: the paper's noise in both directions measures it


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def binarise(ink: np.ndarray, *, min_contrast: float = 0.1) -> np.ndarray:
    """Boolean ink mask: Otsu's threshold with hysteresis, never below the paper's noise.

    The floor (5 noise-sigmas above the paper, and at least ``min_contrast``)
    keeps texture and JPEG noise of an empty page from becoming "ink".
    """
    floor = _median(ink) + max(5 * _robust_sigma(ink), min_contrast)
    if not (ink > floor).any():
        return np.zeros(ink.shape, bool)
    high = max(_otsu(ink[ink > floor / 2]), floor)
    # Hysteresis: faint stretches of a stroke (a thin pen, a lighter digit) are
    # kept when they are connected to clearly dark ink.
    weak, _ = ndimage.label(ink > max(high / 2, floor), structure=_EIGHT)
    strong = np.unique(weak[ink > high])
    return np.isin(weak, strong[strong > 0])


def drop_specks(mask: np.ndarray, *, min_fraction: float = 0.05, min_extent: float = 0.03) -> np.ndarray:
    """Remove connected components smaller than ``min_fraction`` of the largest
    one's area, or whose height and width are both under ``min_extent`` of the
    image's longer side (dust and pen dots on an otherwise empty page)."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return mask.copy()
    areas = np.bincount(labels.ravel())[1:]
    extents = np.array([max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndimage.find_objects(labels)])
    keep = (areas >= min_fraction * areas.max()) & (extents >= min_extent * max(mask.shape))
    return np.concatenate([[False], keep])[labels]


def clean_ink(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey ink in [0, 1]: stroke cores at 1, anti-aliased edges kept, zero beyond 2 px of the mask."""
    if not mask.any():
        return np.zeros(ink.shape, np.float32)
    paper = ink[~mask]
    base = _median(paper) + 2 * _robust_sigma(paper) if paper.size else 0.0
    core = float(np.percentile(ink[mask], 90))
    grey = np.clip((ink - base) / max(core - base, 1e-3), 0.0, 1.0)
    return (grey * _halo(mask)).astype(np.float32)


def crop_to_ink(ink: np.ndarray, level: float = 0.05) -> np.ndarray:
    """The bounding box of the pixels above ``level`` cut out of ``ink`` (faint
    anti-aliased edges included, as MNIST's box is); (0, 0) when there is no ink."""
    inked = ink > level
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), np.float32)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


# --- MNIST geometry -------------------------------------------------------------


def fit_to_box(crop: np.ndarray, box: int = 20) -> np.ndarray:
    """Scale so the longer side is ``box`` px, aspect ratio kept, anti-aliased (Lanczos); max 1."""
    h, w = crop.shape
    if h == 0 or w == 0:
        return np.zeros((0, 0), np.float32)
    scale = box / max(h, w)
    size = (min(box, max(1, round(w * scale))), min(box, max(1, round(h * scale))))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS))
    small = np.clip(small, 0.0, None)  # Lanczos rings slightly below zero
    top = small.max()
    return (small / top if top > 0 else small).astype(np.float32)


def center_by_mass(digit: np.ndarray, size: int = 28) -> np.ndarray:
    """Place ``digit`` (at most size x size, values in [0, 1]) in a size x size uint8
    image so its centre of mass lands on the centre, as MNIST does (whole-pixel shift)."""
    out = np.zeros((size, size), np.uint8)
    h, w = digit.shape
    if h == 0 or w == 0 or digit.sum() <= 0:
        return out
    cy, cx = ndimage.center_of_mass(digit)
    top = int(np.clip(round(size / 2 - cy), 0, size - h))
    left = int(np.clip(round(size / 2 - cx), 0, size - w))
    out[top : top + h, left : left + w] = np.round(np.clip(digit, 0, 1) * 255).astype(np.uint8)
    return out


def ink_and_mask(image) -> tuple[np.ndarray, np.ndarray]:
    """The front end shared by single digits and numbers: grey ink in [0, 1] and its boolean mask."""
    grey = isolate_page(to_grey(image))
    ink = remove_background(grey, decide_polarity(grey))
    mask = drop_specks(remove_rules(binarise(ink)))
    return clean_ink(ink, mask), mask


def digit_from(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (28, 28) uint8 MNIST image of the ink under ``mask`` (one digit's part of the whole mask)."""
    return mnist_digit(ink * _halo(mask))


def mnist_digit(ink: np.ndarray) -> np.ndarray:
    """The (28, 28) uint8 MNIST image of all of ``ink`` (H, W) in [0, 1]: MNIST's stroke width and geometry."""
    return center_by_mass(fit_to_box(normalize_stroke_width(crop_to_ink(ink))))


def _halo(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by 2 px: the region whose grey edges belong to the strokes."""
    return ndimage.binary_dilation(mask, structure=_EIGHT, iterations=2)


def to_mnist(image) -> np.ndarray:
    """Any image of one handwritten digit -> (28, 28) uint8, white ink on black, MNIST-style.

    ``image``: a path, bytes, file object, PIL image, or an array (H, W), (H, W, 3)
    or (H, W, 4). An image without ink (an empty page) gives all zeros.
    """
    ink, _ = ink_and_mask(image)
    return mnist_digit(ink)  # clean_ink already kept only the ink near the mask
