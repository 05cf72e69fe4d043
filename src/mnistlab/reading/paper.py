"""The paper under the ink: its uneven light, and which way the ink goes.

Global measurements of a photo, made on thumbnails and samples (a cubic
light surface, a sheet's outline and the paper's noise need no detail), plus
the small statistics helpers the reading steps share. Arrays are float32 in
[0, 1], shape (H, W).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = [
    "estimate_background",
    "decide_polarity",
    "remove_background",
    "ink_against",
    "ink_strength",
    "thumbnail",
    "components",
    "eroded",
    "dilated",
    "select",
    "sample",
    "median_of",
    "middle",
    "robust_sigma",
    "level_and_noise",
]

# The paper's light is fitted on a thumbnail this size: a cubic surface needs
# few points, and each trimming round costs in proportion to them.
_BACKGROUND_SIDE = 32


# Binary morphology on OpenCV, as scipy.ndimage's defaults do it (4-connected steps, nothing
# beyond the edge) at a fraction of the cost.
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def eroded(mask: np.ndarray, steps: int = 1, kernel: np.ndarray = _CROSS) -> np.ndarray:
    """``mask`` eroded ``steps`` times by ``kernel`` (a 4-connected step); pixels beyond the edge count as empty."""
    out = cv2.erode(mask.view(np.uint8), kernel, iterations=steps, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def dilated(mask: np.ndarray, steps: int = 1, kernel: np.ndarray = _CROSS) -> np.ndarray:
    """``mask`` dilated ``steps`` times by ``kernel`` (a 4-connected step; its anchor at the centre,
    ``length // 2`` for even lengths)."""
    out = cv2.dilate(mask.view(np.uint8), kernel, iterations=steps, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def thumbnail(grey: np.ndarray, side: int, *, averaged: bool = True) -> np.ndarray:
    """``grey`` reduced so its longer side is at most ``side`` px: area-averaged, or where
    ``averaged`` is False, sampled (bilinear; a twentieth of the cost, for outlines of large regions)."""
    h, w = _thumbnail_shape(grey.shape, side)
    if (h, w) == grey.shape:
        return grey
    return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA if averaged else cv2.INTER_LINEAR)


def _thumbnail_shape(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """The (h, w) of ``thumbnail`` of an image of ``shape``."""
    h, w = shape
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return h, w
    return max(1, round(h * scale)), max(1, round(w * scale))


def components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected components of a boolean mask: their count (background included) and integer labels (H, W).

    The labels are uint16 where they surely fit (at most one component per 2x2 pixels; every
    image ``to_grey`` makes): OpenCV labels them faster, and they take half the memory.
    """
    h, w = mask.shape
    fits = (h + 1) * (w + 1) // 4 < 2**16
    return cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_16U if fits else cv2.CV_32S)


def select(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The boolean mask ``keep[labels]`` of the chosen labels (``keep``: one bool per label).

    With fewer than 256 labels a byte lookup table on OpenCV does it at half
    the cost of ``np.take``, which first widens every label to 64 bits.
    """
    if len(keep) <= 256:
        table = np.zeros(256, np.uint8)
        table[: len(keep)] = keep
        return cv2.LUT(labels.astype(np.uint8), table).view(bool)
    return np.take(keep, labels)


def estimate_background(grey: np.ndarray, ink_is_dark: bool | None = None, *, degree: int = 3) -> np.ndarray:
    """A smooth estimate of the paper under uneven lighting, same shape as ``grey``.

    A degree-3 polynomial surface is fitted to a 32-px thumbnail by trimmed least
    squares: pixels far from the fit on the ink side (either side when the
    polarity is not known yet) are left out and the fit repeated. Unlike a
    median filter it has no window to out-grow and no bias at the borders.
    """
    return _surface(_fit_background(thumbnail(grey, _BACKGROUND_SIDE), ink_is_dark, degree), grey.shape)


def _fit_background(
    small: np.ndarray, ink_is_dark: bool | None, degree: int = 3, start: np.ndarray | None = None
) -> np.ndarray:
    """Coefficients of the trimmed least-squares surface (see ``estimate_background``) of a thumbnail.

    ``start``: coefficients already fitted (say, blind to the polarity) to refine in one round.
    """
    design = _design(small.shape, degree)  # (n, terms)
    z = small.ravel().astype(np.float64)
    if start is None:
        # Start from a flat background at the median: ink is the minority, so it
        # never drags the first fit towards itself.
        coef = np.zeros(design.shape[1])
        coef[0] = middle(z)
    else:
        coef = start
    for _ in range(3 if start is None else 1):  # more rounds read the same digits (measured), at more cost
        r = z - design @ coef
        sigma = robust_sigma(r) + 1e-3
        if ink_is_dark is None:
            keep = np.abs(r) < 2.5 * sigma
        elif ink_is_dark:
            keep = r > -2.5 * sigma
        else:
            keep = r < 2.5 * sigma
        if np.count_nonzero(keep) < design.shape[1] * 4:
            break
        a = np.compress(keep, design, axis=0)  # the kept rows: as design[keep], at half the cost
        coef = np.linalg.solve(a.T @ a + _ridge(a.shape[1]), a.T @ z[keep])
    return coef


@functools.lru_cache(maxsize=8)
def _ridge(terms: int) -> np.ndarray:
    """1e-9 * identity (terms, terms): keeps the normal equations solvable on a flat thumbnail."""
    ridge = 1e-9 * np.eye(terms)
    ridge.flags.writeable = False
    return ridge


def _surface(coef: np.ndarray, shape: tuple[int, int], degree: int = 3) -> np.ndarray:
    """The fitted surface at full size, float32 ``shape``."""
    # sum coef * x^i * y^j, evaluated separably: (h, d+1) @ (d+1, d+1) @ (d+1, w).
    c = np.zeros((degree + 1, degree + 1))
    for (i, j), value in zip(_terms(degree), coef):
        c[j, i] = value
    left = (_powers(shape[0], degree) @ c).astype(np.float32)  # (h, d+1): small, in float64 first
    return left @ _powers(shape[1], degree).T.astype(np.float32)  # (h, w) straight into float32


def _terms(degree: int) -> list[tuple[int, int]]:
    """The (i, j) of the monomials x^i y^j of total degree at most ``degree``."""
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


@functools.lru_cache(maxsize=64)
def _design(shape: tuple[int, int], degree: int) -> np.ndarray:
    """(h * w, terms) monomials at every pixel of a thumbnail of ``shape`` (few shapes recur: cached)."""
    vy, vx = _powers(shape[0], degree), _powers(shape[1], degree)
    design = np.stack([np.outer(vy[:, j], vx[:, i]).ravel() for i, j in _terms(degree)], axis=1)
    design.flags.writeable = False
    return design


@functools.lru_cache(maxsize=256)
def _powers(n: int, degree: int) -> np.ndarray:
    """(n, degree + 1): t^0 .. t^degree for n points t evenly spaced in [-1, 1]."""
    t = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    powers = t[:, None] ** np.arange(degree + 1)[None, :]
    powers.flags.writeable = False
    return powers


def sample(a: np.ndarray, n: int = 2048) -> np.ndarray:
    """At most about ``n`` evenly spaced values of ``a``: plenty for a median, at a fraction of its cost."""
    flat = a.ravel()
    return flat[:: max(1, flat.size // n)]


def median_of(a: np.ndarray) -> float:
    return middle(sample(a))


def middle(a: np.ndarray) -> float:
    """The median of a 1-d array (the upper one for an even size), none of ``np.median``'s overhead.

    Samples (a few thousand values) are sorted: numpy's vectorised sort takes
    a few microseconds whatever the values, where a partition slows tenfold on
    many equal ones (a clean drawing's paper, exactly 0 ink). Larger arrays
    are partitioned.
    """
    k = a.size // 2
    return float(np.sort(a)[k] if a.size <= 4096 else np.partition(a, k)[k])


def robust_sigma(r: np.ndarray) -> float:
    """Noise level from the median absolute deviation."""
    return level_and_noise(r)[1]


def level_and_noise(a: np.ndarray) -> tuple[float, float]:
    """``median_of(a)`` and ``robust_sigma(a)`` from one sample, its median found once."""
    s = sample(a)
    level = middle(s)
    return level, 1.4826 * middle(np.abs(s - level))


def decide_polarity(grey: np.ndarray, background: np.ndarray | None = None) -> bool:
    """True when the ink is darker than the paper, False for light ink on dark.

    The ink is the minority that stands out from the smooth background: compare
    how much mass lies more than 4 noise-sigmas below and above it.
    ``background``: ``estimate_background(grey)``, where the caller has it.
    """
    r = grey - (estimate_background(grey) if background is None else background)
    t = 4 * max(robust_sigma(r), 1.0 / 255)
    dark = -(r[r < -t] + t).sum()  # the mass beyond t on each side: few pixels, indexed rather than clipped
    light = (r[r > t] - t).sum()
    return bool(dark >= light)


def remove_background(grey: np.ndarray, ink_is_dark: bool) -> np.ndarray:
    """Ink strength (H, W): about 0 on the paper (its noise on either side), larger where the ink is."""
    return ink_against(grey, estimate_background(grey, ink_is_dark), ink_is_dark)


def ink_against(
    grey: np.ndarray, background: np.ndarray | np.float32, ink_is_dark: bool, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Ink strength against ``background`` (H, W), or one grey for a flat paper; into ``out`` where given
    (``grey`` itself, say, when the caller has no more use for it).

    Dark ink is measured relative to the local paper brightness, which cancels
    multiplicative lighting (shade, vignetting); light ink by its excess over
    the background."""
    # float32 throughout (H, W), in place; signed: the paper's noise in both directions measures it.
    if ink_is_dark:
        ink = np.subtract(background, grey, out=out)
        paper = np.maximum(background, 0.05)
    else:
        ink = np.subtract(grey, background, out=out)
        paper = np.maximum(1.0 - background, 0.05)
    if paper.ndim or paper != 1:  # a flat white (for light ink, black) paper divides by 1: nothing to do
        ink /= paper
    return ink.astype(np.float32, copy=False)


def ink_strength(grey: np.ndarray) -> np.ndarray:
    """``remove_background(grey, decide_polarity(grey))`` with one thumbnail and one
    polarity-blind fit shared by both, refined on the ink's side.

    A clean drawing (``flat_paper``) skips the fits: its paper is one exact grey.
    """
    flat = flat_paper(grey)
    if flat is not None:
        level, dark = flat
        return ink_against(grey, np.float32(level), dark)
    small = thumbnail(grey, _BACKGROUND_SIDE)
    blind = _fit_background(small, None)
    dark = decide_polarity(grey, _surface(blind, grey.shape))
    return ink_against(grey, _surface(_fit_background(small, dark, start=blind), grey.shape), dark)


def flat_paper(grey: np.ndarray) -> tuple[float, bool] | None:
    """The paper's grey and whether the ink is darker, when ``grey`` is a clean drawing; else None.

    A canvas export is one exact grey wherever nothing is drawn: all of its
    border, most of the image, every stroke on one side of it. The trimmed fit
    of ``ink_strength`` then settles on that grey too where most of its
    thumbnail's cells are exactly that grey (checked here, from which cells any
    stroke pixel reaches): the fit leaves out what lies far from it, and only
    the faint anti-aliased edges of strokes averaged into a cell can pull it,
    by a few 1e-4 at most (measured on canvas exports). So the constant is the
    background, and the polarity is the side the strokes lie on
    (``decide_polarity``'s answer against it). Where strokes reach most cells
    (fifteen 1s across the page's number pad) the fit settles between ink and
    paper and its polarity is a coin's toss (that row read as no digits): such
    a canvas is still a clean drawing when most of its ink is one exact grey,
    the brush's (``_drawn_in_one_grey``). A photo's sensor noise and paper
    texture leave no border at one exact value; one blown out to pure white
    over its whole border and most of its area passes, and its fit settles on
    that white just the same; one whose shadow reaches most cells is left to
    the fit.
    """
    level = grey[0, 0]
    if not all((edge == level).all() for edge in (grey[0], grey[-1], grey[:, 0], grey[:, -1])):
        return None
    some = sample(grey)
    if 2 * np.count_nonzero(some == level) <= some.size:  # the paper is not most of the image
        return None
    if grey.max() == level:
        dark = True
    elif grey.min() == level:
        # decide_polarity against the constant: its noise is 0 (most residuals are), its threshold 4/255.
        dark = bool(grey.max() - level <= np.float32(4 / 255))
    else:
        return None  # strokes on both sides of the paper: no constant explains it
    cells = _thumbnail_shape(grey.shape, _BACKGROUND_SIDE)
    if 2 * _mixed_cells(grey != level, cells) >= cells[0] * cells[1] and not _drawn_in_one_grey(grey, level):
        return None  # a photo blown out to white at its edges, a shadow over its middle: the fit's to make
    return float(level), dark


def _drawn_in_one_grey(grey: np.ndarray, level: float) -> bool:
    """Whether most of what is not paper in ``grey`` is one exact grey: a brush's strokes, whose cores are all its
    colour (a photo's shadow or its paper's texture is a gradient of many)."""
    some = sample(grey)
    off = some[some != level]
    if off.size == 0:
        return True
    _, counts = np.unique(off, return_counts=True)
    return 2 * int(counts.max()) >= off.size


def _mixed_cells(off: np.ndarray, cells: tuple[int, int]) -> int:
    """At least as many cells of an area-averaged thumbnail of shape ``cells`` as average in a pixel of ``off``."""
    h, w = off.shape
    th, tw = cells
    if cells == off.shape:
        return int(np.count_nonzero(off))
    # Cell (i, j) averages rows [i h / th, (i + 1) h / th) (and columns alike): parts of at most
    # ceil(h / th) + 1 rows from row floor(i h / th) on. A dilation that far right and down, read
    # at each cell's first pixel, sees them all.
    reach = (-(-w // tw) + 1, -(-h // th) + 1)  # (x, y), as OpenCV takes sizes
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, reach, anchor=(0, 0))
    grown = cv2.dilate(off.view(np.uint8), kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return int(np.count_nonzero(grown[np.ix_(np.arange(th) * h // th, np.arange(tw) * w // tw)]))
