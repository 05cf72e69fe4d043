"""Photos, scans and canvas drawings of handwriting -> MNIST-style 28x28 digits.

MNIST digits are white ink on black, anti-aliased grey, the longer side fitted
into a 20x20 box with the aspect ratio kept, and placed in 28x28 so that the
centre of mass sits at the centre. A photo is none of that, which is why "resize
it to 28x28 and flatten" gives near-random answers. ``to_mnist`` runs the steps
below, each a function of its own:

    load_image -> to_grey (decode) -> isolate_page (sheet) -> ink_strength (paper: decide_polarity and
    remove_background) -> remove_grain -> binarise -> remove_rules (rules) -> drop_specks
    -> clean_ink -> crop_to_ink -> normalize_stroke_width (width) -> fit_to_box -> center_by_mass (geometry)

``remove_grain`` evens out the paper for ``binarise`` alone (both in
``mnistlab.reading.binarise``): the rules are found, and the strokes' grey
measured, in the ink strength as it came. A second look at a doubted photo
(``to_mnist(faint=True)``) binarises the grain-free ink averaged along its
strokes (``faint.along_strokes``) and finds the rules in the grain-free ink. A
third (``to_mnist(closer=True)``) does the same with the photo read at twice
the work size, and brings the mask down to it.

A clean drawing (a canvas export, its paper one exact grey: ``flat_paper``) is
first averaged down to about ``_DRAWING_SIDE`` px (``reduce_drawing``), then
binarised and cleaned in its ink's bounding box (the same numbers), with no
search for a sheet where too little is brighter than its paper, and none for
rules, which would cross its edges.
``segment_digits`` runs the same front end on a row of digits, groups the ink
into digits (broken strokes merged) and returns one 28x28 image per digit, left
to right. Working arrays are float32 in [0, 1], shape (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np

from mnistlab.errors import InputError
from mnistlab.reading.binarise import binarise, remove_grain
from mnistlab.reading.decode import WORK_SIDE, reduced_side, to_grey
from mnistlab.reading.faint import along_strokes
from mnistlab.reading.geometry import center_by_mass, fit_to_box
from mnistlab.reading.paper import (
    components,
    dilated,
    flat_paper,
    ink_against,
    ink_strength,
    level_and_noise,
    sample,
    select,
)
from mnistlab.reading.rules import remove_rules
from mnistlab.reading.sheet import isolate_page
from mnistlab.reading.width import normalize_stroke_width

__all__ = [
    "reduce_drawing",
    "drop_specks",
    "clean_ink",
    "crop_to_ink",
    "to_mnist",
    "read_digit",
    "mnist_digit",
    "holds_writing",
    "holds_ink",
    "ink_mask_and_specks",
]

_HALO = 2  # px around the mask whose grey edges belong to the strokes (``clean_ink``)
_FIVE = np.ones((2 * _HALO + 1,) * 2, np.uint8)  # the halo's dilation: two 8-connected steps in one
_EDGE = 3  # px: ink wholly this close to the image's edge is no writing (``drop_specks``)
# On a strip, ink this share of its shorter side tall or wide is no speck, however long the strip: in a
# tight crop of 40 digits (17 times as long as high) every digit spanned under 3% of the longer side and
# was dropped as one.
_STRIP_SPECK = 0.25
# Ink under that reach that holds this share of the largest piece of writing's ink is writing too: a number
# photographed from afar (digits 180 px tall in a 4000 x 3000 photo, 14 px at the work size) lost the small 0s
# of a handwriting font as specks, 20417 and 94062 read as a confident 2417 and 9462. On dev seeds 41 and 43
# (1,800 digits and 3,200 non-digits) and 7, 41, 43, 45 (1,200 rows) no answer changed but one letter flagged
# more and eight doubted rows read otherwise, still doubted.
_WRITING_SHARE = 0.25
# A digit's ink spans at least this share of the image's longer side (19 px of a 320 px photo): less is a
# speck (dust, a pen's dot, a grid line's stub), which blown up to MNIST's 20 px box reads as a 1 or a 4. On
# dev seeds digits spanned 0.23 and more, where their ink was found at all; the empty pages answered, 0.03-0.04.
_MIN_DIGIT = 0.06
# px: a clean drawing (a canvas export) is averaged down to about this shorter side before it is read. MNIST's
# 20 px box needs far less: 300 blown-up MNIST test digits and 540 canvases of other hands (dev seed 12) read
# right, flagged and confidently wrong as often as at 280 px, and a 280 px canvas took 30% less CPU.
_DRAWING_SIDE = 140
# A third look at a doubted photo (``_closer_look``) finds its mask at this many times the work size, and a
# work-size pixel is ink where that mask covers this share of it: a 1 px line at twice the size covers about
# half of each pixel it crosses, a quarter where it crosses a corner. On dev seed 61 (800 pen digits on ruled
# and squared paper), after the second look: 5 more read right, 5 fewer flagged, no more wrong.
_CLOSER = 2
_COVERED = 0.25


def drop_specks(mask: np.ndarray, *, min_fraction: float = 0.05, min_extent: float = 0.03) -> np.ndarray:
    """Remove connected components smaller than ``min_fraction`` of the largest
    one's area, or whose height and width are both under ``min_extent`` of the
    image's longer side (dust and pen dots on an otherwise empty page; on a
    strip, under ``_STRIP_SPECK`` of its shorter side if that is less) unless
    they hold ``_WRITING_SHARE`` of the ink of the largest one that spans that
    much (a small digit beside larger ones), or that lie wholly within ``_EDGE``
    px of the image's edge (a sliver of a rule or of the page's edge that the
    frame cut off: no writing is that thin)."""
    mask = np.asarray(mask, bool)  # it also selects the labels below
    n, labels = components(mask)
    if n == 1:
        return mask.copy()
    if n == 2:  # one stroke (most drawings): its area and reach without counting labels
        areas = np.array([np.count_nonzero(mask)])
        keep = np.array([min(mask.shape) <= 4 * _EDGE or bool(mask[_EDGE:-_EDGE, _EDGE:-_EDGE].any())])
    else:
        areas = np.bincount(labels[mask], minlength=n)[1:]  # the ink's labels alone: a tenth of the pixels
        keep = areas >= min_fraction * areas.max()
        if min(mask.shape) > 4 * _EDGE:
            inner = labels[_EDGE:-_EDGE, _EDGE:-_EDGE]
            keep &= np.bincount(inner[inner > 0], minlength=n)[1:] > 0  # components reaching inside the edge strip
    extent = min(min_extent * max(mask.shape), _STRIP_SPECK * min(mask.shape))
    # A component of more than (ceil(extent) - 1)^2 pixels spans at least ``extent`` one way:
    # only smaller ones need their bounding boxes (none, most of the time; a few where there are specks).
    spans = keep.copy()
    for k in np.flatnonzero(keep & (areas <= (np.ceil(extent) - 1) ** 2)):
        _, _, width, height = cv2.boundingRect((labels == k + 1).view(np.uint8))
        spans[k] = max(width, height) >= extent
    if spans.any():  # writing: ink as big as a fair share of it is writing too, however small in the photo
        spans |= keep & (areas >= _WRITING_SHARE * areas[spans].max())
    keep = spans
    if keep.all():  # a clean drawing: nothing to drop, no lookup
        return mask.copy()
    return select(labels, np.concatenate([[False], keep]))


def clean_ink(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey ink in [0, 1]: stroke cores at 1, anti-aliased edges kept, zero beyond 2 px of the mask."""
    out = np.zeros(ink.shape, np.float32)
    box = _box(mask, _HALO)
    if box is not None:
        out[box] = _clean_ink_in(ink, mask, box)
    return out


def holds_writing(mask: np.ndarray) -> bool:
    """Whether ``mask`` (H, W) holds ink that can be writing: ink that spans at least ``_MIN_DIGIT`` of the
    image's longer side, one way or the other (less is a speck: dust, a pen's dot, a grid line's stub)."""
    core = _box(mask)
    return core is not None and _spans_a_digit(core, mask.shape)


def _spans_a_digit(core: tuple[slice, slice], shape: tuple[int, ...]) -> bool:
    return max(s.stop - s.start for s in core) >= _MIN_DIGIT * max(shape)


def _box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """The bounding box of ``mask`` grown by ``margin`` px within the image (None: no ink)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return _grown((slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)), margin, mask.shape)


def _grown(box: tuple[slice, slice], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """``box`` grown by ``margin`` px on every side, within an image of ``shape``."""
    (rows, cols), (h, w) = box, shape
    return (
        slice(max(rows.start - margin, 0), min(rows.stop + margin, h)),
        slice(max(cols.start - margin, 0), min(cols.stop + margin, w)),
    )


def _clean_ink_in(ink: np.ndarray, mask: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """``clean_ink(ink, mask)[box]`` (``box``: ``_box(mask, _HALO)``, beyond which it is all zero), computed
    in the box alone; the paper's level and noise are still those of the whole image."""
    some, inked = sample(ink), sample(mask)  # the paper's level and noise need no more
    paper = some[~inked]
    level, noise = level_and_noise(paper) if paper.size else (0.0, 0.0)
    base = level + 2 * noise
    part, part_mask = ink[box], mask[box]
    core = _percentile_90(part[part_mask])
    # (h, w) float32, in place: one array for all the steps (on a clean drawing's exact paper, base is 0).
    scale = np.float32(1 / max(core - base, 1e-3))
    if base:
        grey = part - base
        grey *= scale
    else:
        grey = part * scale
    np.clip(grey, 0.0, 1.0, out=grey)
    return _near_strokes(grey, part_mask)


def _percentile_90(values: np.ndarray) -> float:
    """``np.percentile(values, 90)`` of 1-d float32 ``values`` (linear interpolation, its very
    arithmetic), without its overhead: numpy's vectorised sort finds the two values around the
    90th percentile in a fraction of the time of a two-point partition (measured, 3,000 to 50,000 values)."""
    index = (values.size - 1) * 0.9
    k = int(index)
    if k + 1 >= values.size:
        return float(values.max())
    ordered = np.sort(values)
    low, high = ordered[k], ordered[k + 1]
    t = index - k  # a Python float: the arithmetic below stays float32, as numpy's does
    return float(high - (high - low) * (1 - t)) if t >= 0.5 else float(low + (high - low) * t)


def crop_to_ink(ink: np.ndarray, level: float = 0.05) -> np.ndarray:
    """The bounding box of the pixels above ``level`` cut out of ``ink`` (faint
    anti-aliased edges included, as MNIST's box is); (0, 0) when there is no ink."""
    box = _box(ink > level)
    return np.zeros((0, 0), np.float32) if box is None else ink[box]


def ink_and_mask(
    image, *, faint: bool = False, closer: bool = False, min_short_side: int = 0
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The front end shared by single digits and numbers: grey ink in [0, 1], its boolean mask, and whether
    the image is a clean drawing (``faint``, ``closer``: a photo's second and third looks, as ``to_mnist``
    takes them; ``min_short_side``: a strip is read at a size that keeps its shorter side this many px,
    as ``to_grey`` takes it).

    A clean drawing (``flat_paper``) has no rules to remove: a rule runs
    through the image's edges, and a clean drawing's edges are all paper.
    """
    ink, mask, flat = _ink_and_raw_mask(image, faint, closer, min_short_side)
    return clean_ink(ink, mask), mask, flat


def ink_mask_and_specks(
    image, *, faint: bool = False, closer: bool = False, min_short_side: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """``ink_and_mask``, and the mask before ``drop_specks`` (a row's decimal point is as small as a speck)."""
    ink, raw, flat = _ink_and_raw_mask(image, faint, closer, min_short_side, specks=True)
    mask = drop_specks(raw)
    return clean_ink(ink, mask), mask, raw, flat


def _ink_and_raw_mask(
    image, faint: bool = False, closer: bool = False, short: int = 0, *, specks: bool = False
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``ink_and_mask`` before ``clean_ink``: the ink strength as it came from the paper (``faint``: a photo's
    second look, ``_faint_mask``; ``closer``: its third, ``_closer_look``; a clean drawing has no noise to
    look below), and whether the image is a clean drawing (``short``: ``to_grey``'s ``min_short_side``;
    ``specks``: the mask with its specks, before ``drop_specks``; a third look's has none left)."""
    looked = _closer_look(image, short) if closer else None
    if looked is not None:
        return looked
    ink, flat = _page_ink(to_grey(image, min_short_side=short))
    if flat:
        mask = _clean_drawing_mask(ink)
    elif faint or closer:  # a third look that shows no more than the work size is the second
        mask = _faint_mask(ink)
    else:
        mask = _first_look_mask(ink, remove_grain(ink))
    return ink, mask if specks else drop_specks(mask), flat


def _first_look_mask(ink: np.ndarray, grain_free: np.ndarray) -> np.ndarray:
    """A photo's mask at the first look: ``grain_free`` (``remove_grain(ink)``) binarised, rules found in ``ink``."""
    return remove_rules(binarise(grain_free), ink)


def _faint_mask(ink: np.ndarray) -> np.ndarray:
    """The mask of a second look at a doubted photo (``mnistlab.reading.faint`` says why): the grain-free
    ink averaged along its strokes and binarised, rules found in the grain-free ink; on ruled or squared
    paper, the first look's mask unless half of this one lies within 3 px of it."""
    grain_free = remove_grain(ink)
    return _faint_rules_removed(binarise(along_strokes(grain_free)), ink, grain_free)


def _faint_rules_removed(raw: np.ndarray, ink: np.ndarray, grain_free: np.ndarray) -> np.ndarray:
    """``raw``, a later look's mask, without the rules found in ``grain_free``; on ruled or squared paper,
    the first look's mask instead unless half of it lies within 3 px of that."""
    faint = remove_rules(raw, ink, lines_in=grain_free)
    if np.array_equal(faint, raw):  # no rules: plain paper
        return faint
    first = drop_specks(_first_look_mask(ink, grain_free))
    near = np.count_nonzero(faint & dilated(first, 3))
    return faint if near >= 0.5 * np.count_nonzero(faint) else first


def _closer_look(image, short: int = 0) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """``_ink_and_raw_mask`` of a third look at a doubted photo: the second look's mask found in the photo
    read at ``_CLOSER`` times the work size, brought down to it (the pixels it covers by ``_COVERED`` or
    more); None where that shows no more (a photo no larger than the work size, a clean drawing).

    Reduced to the work size, a hair-thin pen line keeps half its contrast or
    less, about the paper's noise; at twice the size it stands clear of it.
    Only the mask is found there: the ink, the rules and every later step are
    the work size's, at whose pixel sizes they were chosen (``short``: a strip's, as ``to_grey`` takes it).
    """
    big = to_grey(image, max_side=_CLOSER * WORK_SIDE, min_short_side=_CLOSER * short)
    side = reduced_side(big.shape[1], big.shape[0], WORK_SIDE, short)  # the work size's longer side
    if max(big.shape) <= side:
        return None
    ink_big, flat = _page_ink(big)
    if flat:
        return None
    h, w = ink_big.shape
    scale = max(h, w) / side
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    ink = cv2.resize(ink_big, size, interpolation=cv2.INTER_AREA)  # (h', w') at the work size
    strokes = binarise(along_strokes(remove_grain(ink_big, scale=scale)))  # (h, w)
    raw = cv2.resize(strokes.astype(np.float32), size, interpolation=cv2.INTER_AREA) > _COVERED
    return ink, drop_specks(_faint_rules_removed(raw, ink, remove_grain(ink))), False


def _clean_drawing_mask(ink: np.ndarray) -> np.ndarray:
    """``binarise(ink)`` of a clean drawing (``flat_paper``), binarised in the ink's bounding box alone.

    Its paper is exactly 0 ink and most of the image, every other pixel above
    it: the paper's level and noise are 0, and nothing beyond the box is ink.
    """
    mask = np.zeros(ink.shape, bool)
    box = _box(ink > 0)
    if box is not None:
        mask[box] = binarise(ink[box], paper_noise=(0.0, 0.0))
    return mask


def _page_ink(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """``ink_strength(isolate_page(grey))``, and whether that page is a clean drawing (``flat_paper``: its ink
    then at its work size, ``reduce_drawing``); ``grey`` (``to_grey``'s own array) may be overwritten.

    The paper's flatness is measured once for both steps (``ink_strength`` looks
    again on a photo, where the first edge already says no).
    """
    flat = flat_paper(grey)
    page = isolate_page(grey, None if flat is None else flat[0])
    if page is not grey:  # a sheet cut out: its paper is measured anew
        grey, flat = page, flat_paper(page)
    if flat is None:
        return ink_strength(grey), False
    level, dark = flat
    return reduce_drawing(ink_against(grey, np.float32(level), dark, out=grey)), True


def reduce_drawing(ink: np.ndarray) -> np.ndarray:
    """A clean drawing's ink (paper exactly 0) averaged over k x k blocks, k the whole number of times
    ``_DRAWING_SIDE`` fits in its shorter side (unchanged below 2): a 280 px canvas export is read at 140 px.
    A row of digits, wide and short, keeps its size. The paper stays exactly 0."""
    h, w = ink.shape
    k = min(h, w) // _DRAWING_SIDE
    if k < 2:
        return ink
    if h % k or w % k:  # paper added to whole blocks
        ink = cv2.copyMakeBorder(ink, 0, -h % k, 0, -w % k, cv2.BORDER_CONSTANT, value=0)
    return cv2.resize(ink, (ink.shape[1] // k, ink.shape[0] // k), interpolation=cv2.INTER_AREA)


def digit_from(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (28, 28) uint8 MNIST image of the ink under ``mask`` (one digit's part of the whole mask)."""
    return mnist_digit(_near_strokes(ink, mask))


def mnist_digit(ink: np.ndarray) -> np.ndarray:
    """The (28, 28) uint8 MNIST image of all of ``ink`` (H, W) in [0, 1]: MNIST's stroke width and geometry."""
    return center_by_mass(fit_to_box(normalize_stroke_width(crop_to_ink(ink))))


def _near_strokes(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``ink`` (float32, H, W) kept within 2 px of ``mask`` (8-connected: the grey edges that belong to
    the strokes), zero beyond: a new array, as ``ink * halo`` but in one masked copy."""
    return cv2.copyTo(ink, dilated(mask, kernel=_FIVE).view(np.uint8))


def to_mnist(image, *, faint: bool = False, closer: bool = False) -> np.ndarray:
    """Any image of one handwritten digit -> (28, 28) uint8, white ink on black, MNIST-style.

    ``image``: a path, bytes, file object, PIL image, or an array (H, W), (1, H, W) (PyTorch's grey), (H, W, 2)
    (grey and alpha), (H, W, 3) or (H, W, 4). An image without ink (an empty page), or with only a speck of
    it (under ``_MIN_DIGIT`` of its longer side), gives all zeros.
    ``faint``: a second look at a photo whose first reading was doubted, its ink
    averaged along its strokes before it is binarised, and faint rules looked
    for where the paper's grain hid them (``_faint_mask``): a hair-thin or
    light stroke that came out in pieces may come out whole. A clean drawing
    comes out as without it.
    ``closer``: a third look, as the second but with its mask found at twice
    the work size (``_closer_look``); a photo no larger than the work size, or
    a clean drawing, comes out as at the second look.
    """
    if not all(isinstance(flag, bool | np.bool_) for flag in (faint, closer)):  # "no" is truthy: another look
        raise InputError(f"faint and closer must each be True or False, got {faint!r} and {closer!r}.")
    return read_digit(image, faint=faint, closer=closer)[0]


def holds_ink(image) -> bool:
    """Whether the first look at ``image`` finds any ink at all, digit-sized or only specks (``to_mnist``
    gives all zeros for both): a photo whose only ink is specks may hold a digit photographed from afar."""
    return bool(_ink_and_raw_mask(image, False, False)[1].any())


def read_digit(image, *, faint: bool = False, closer: bool = False) -> tuple[np.ndarray, bool]:
    """``to_mnist(image, faint=faint, closer=closer)``, and whether ``image`` is a clean drawing
    (``flat_paper``): a doubted drawing's second look would read the very same image, so it needs none."""
    ink, mask, flat = _ink_and_raw_mask(image, faint, closer)
    core = _box(mask)
    if core is None or not _spans_a_digit(core, mask.shape):
        return np.zeros((28, 28), np.uint8), flat  # no ink, or only a speck: no digit
    box = _grown(core, _HALO, mask.shape)
    return mnist_digit(_clean_ink_in(ink, mask, box)), flat  # clean_ink's ink, all of it: zero beyond the box
