"""Rules of lined and squared paper removed from a digit's ink mask.

Paper lines are not ink of the digit, yet binarising keeps them with it.
``remove_rules`` finds straight lines through the image (each at its own lean:
a photographed grid's lines fan out) in the grey ink strength and in the mask,
and drops their pixels from the boolean mask, keeping a stroke written along
one where it is darker or thicker than the rule.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["remove_rules"]

_RULE_SPAN = 0.85  # a rule runs through at least this share of the image


def _line(length: int, axis: int) -> np.ndarray:
    """A straight structuring element ``length`` pixels long along ``axis``."""
    return np.ones((1, length) if axis == 1 else (length, 1), np.uint8)


def _closed(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``mask`` closed by ``kernel``, nothing beyond the edge (as scipy's ``binary_closing``)."""
    closed = cv2.morphologyEx(
        mask.view(np.uint8), cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return closed.view(bool)


def _least_squares_line(along: np.ndarray, across: np.ndarray) -> tuple[float, float]:
    """(offset, slope) of the straight line ``across = offset + slope * along`` nearest the points (least squares);
    level through their mean when they all lie at one position along."""
    offset, slope = float(across.mean()), 0.0
    if len(along) > 1:
        x = along - along.mean()
        slope = float((x * (across - offset)).sum() / max(float((x * x).sum()), 1e-9))
        offset -= slope * float(along.mean())
    return offset, slope


def _fitted_line(strip: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Pixels of ``strip`` (across, along) within the rule's thickness of the straight line fitted to ``part``.

    ``part``: the strip's ink near the rule. The line is fitted only where it is
    as thin as the rule itself (most of its length): where a digit's stroke
    touches or runs along the rule, more pixels lie across it there, and those
    positions are left out.
    """
    counts = part.sum(axis=0)  # pixels across the rule at each position along it
    positions = np.flatnonzero(counts)
    # The rule's own thickness: where a stroke runs along it, more pixels lie across it (a low quantile skips those).
    thickness = float(np.sort(counts[positions])[len(positions) // 4])
    thin = positions[counts[positions] <= thickness + 1]
    across = (part[:, thin] * np.arange(part.shape[0])[:, None]).sum(0) / counts[thin]
    offset, slope = _least_squares_line(thin, across)
    half = thickness / 2 + 0.5
    rows = np.arange(part.shape[0])[:, None]
    near = np.abs(rows - (slope * np.arange(part.shape[1])[None, :] + offset)) <= half + 1
    # Where a stroke runs along the rule, the ink across it is thicker than the rule: keep that ink (the runs
    # across longer than the rule allows are what an opening by a line that long keeps).
    longer = int(2 * half + 2) + 1
    thick = cv2.morphologyEx(
        strip.view(np.uint8), cv2.MORPH_OPEN, _line(longer, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0
    ).view(bool)
    return strip & near & ~thick


_BLOCKS = 8  # a rule is looked for as a straight run through 8 blocks along it
_MAX_TILT = 0.08  # rows across per column along: a page turned and sheared by up to ~4.5 degrees
_RIDGE = 3  # pooled rows either side of a rule that it stands out of
_MIN_INSIDE = 6  # blocks: a line leaving the image through its top or bottom is judged on 6 of 8 at least


def _rule_lines(ink: np.ndarray, axis: int) -> list[tuple[float, float]]:
    """Straight lines that run through the whole of ``ink`` (H, W) along ``axis`` (1: horizontal rules):
    (offset, slope) in pixels, the line at position ``p`` along it lying ``offset + slope * p`` across.

    A faint rule in a photo comes out of binarisation in pieces, but in the ink
    itself it is a line of the same strength from edge to edge: averaged over
    8 blocks along it (and pairs of pixels across it, where the image is large)
    it stands out of the paper's noise in every block, while a digit's stroke
    crosses a few of them. A line is a run of blocks above the noise in at least
    ``_RULE_SPAN`` of the blocks it crosses inside the image (``_MIN_INSIDE``
    of them at least: a rule of a turned page may leave the image through its
    top or bottom), at any slope up to ``_MAX_TILT``.
    """
    n_across, n_along = ink.shape if axis == 1 else ink.shape[::-1]
    pool = 2 if n_across >= 128 else 1
    n, width = n_across // pool, n_along // _BLOCKS
    # (n, 8): the mean ink of each block of ``pool`` rows across and ``width`` along, by OpenCV (whole
    # blocks only, the remainder left out: an exact integer reduction, 5x faster than a fractional one).
    if axis == 1:
        blocks = cv2.resize(ink[: n * pool, : width * _BLOCKS], (_BLOCKS, n), interpolation=cv2.INTER_AREA)
    else:
        blocks = cv2.resize(ink[: width * _BLOCKS, : n * pool], (n, _BLOCKS), interpolation=cv2.INTER_AREA).T
    # Each block column against its own paper: lines the other way (squared paper) and light that changes
    # along the axis raise a whole column, not the noise. Rules are a minority of the rows: a median and MAD.
    level = np.sort(blocks, axis=0)[n // 2]  # (8,)
    noise = np.sort(np.abs(blocks - level), axis=0)[n // 2] * 1.4826  # (8,)
    floor = max(3 * float(np.sort(noise)[_BLOCKS // 2]), 0.02)
    # A rule is a ridge: its blocks stand out of the paper and out of the rows a few pixels either side of it
    # (the ink of a row of digits, spread over their height, does not).
    sides = _padded(blocks, _RIDGE)
    on = (blocks > level + floor) & (blocks > np.maximum(sides[:n], sides[2 * _RIDGE :]) + floor / 2)
    on[1:] |= on[:-1].copy()  # a thin line falls on one or two neighbouring pooled rows
    # A line's blocks lie within ``reach`` rows of its middle one's: only middle rows whose band of
    # 2 * reach + 1 rows has blocks on in enough columns are looked at (none in most photos and canvases).
    drift = int(np.ceil(_MAX_TILT * n_along / pool / 2)) * 2  # rows across the whole width at the largest tilt
    reach = drift // 2 + 1
    band = cv2.dilate(_padded(on.view(np.uint8), drift), np.ones((2 * reach + 1, 1), np.uint8))
    centres = np.flatnonzero(band.sum(axis=1) >= _MIN_INSIDE) - drift  # rows -drift..n + drift - 1
    if centres.size == 0:
        return []
    # Each block is worth 1 when on, plus its strength (all 8 at their strongest sum to < 1): a line's
    # score counts its blocks on and, among lines through as many, prefers the strongest.
    value = on + np.clip(blocks - level, 0.0, None) / (_BLOCKS * float(np.max(blocks - level)) * 1.001 + 1e-9)
    drifts = np.arange(-drift, drift + 1, 2)  # a line's two end blocks one row apart at most from the tried ones
    shifts = np.round(drifts[:, None] * ((np.arange(_BLOCKS) + 0.5) / _BLOCKS - 0.5)).astype(np.intp)
    where = centres[None, :, None] + shifts[:, None, :]  # (drifts, centres, 8): the line's row in each block
    inside = ((where >= 0) & (where < n)).sum(axis=2)  # (drifts, centres)
    padded = _padded(value, drift + 1)
    score = padded[where + drift + 1, np.arange(_BLOCKS)].sum(axis=2)  # (drifts, centres)
    score[(np.floor(score) < _RULE_SPAN * inside) | (inside < _MIN_INSIDE)] = 0.0
    best = np.zeros(n + 2 * drift)  # every possible centre row, -drift..n + drift - 1
    best[centres + drift] = score.max(axis=0)
    best_drift = np.zeros(n + 2 * drift, np.intp)
    best_drift[centres + drift] = drifts[score.argmax(axis=0)]
    around = _padded(best[:, None], 1)[:, 0]  # (n + 2 * drift + 2,): each centre's neighbours either side
    peaks = (best > 0) & (best >= np.maximum(around[:-2], around[2:]))
    peaks[1:] &= ~(peaks[:-1] & (best[1:] == best[:-1]))  # a flat top of two rows is one line
    return [
        ((c - drift + 0.5) * pool - 0.5 - d * pool / 2, d * pool / (width * _BLOCKS))
        for c, d in zip(np.flatnonzero(peaks), best_drift[peaks])
    ]


def _padded(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` (n, k) with ``rows`` rows of zeros above and below (``np.pad``'s result, at a fraction of its cost)."""
    out = np.zeros((len(a) + 2 * rows, a.shape[1]), a.dtype)
    out[rows : rows + len(a)] = a
    return out


def _rule_pixels(mask: np.ndarray, offset: float, slope: float, reach: float = 4.0) -> tuple[int, np.ndarray]:
    """The rule's pixels of ``mask`` (across, along) about a line of ``_rule_lines``: the first row across
    of the strip they lie in, and the strip's (rows, along) boolean pixels of the rule."""
    n_across, n_along = mask.shape
    ends = (offset, offset + slope * (n_along - 1))
    margin = reach + 3  # the fitted line's band reaches a little beyond the found one's
    lo, hi = max(0, int(min(ends) - margin)), min(n_across, int(max(ends) + margin) + 1)
    strip = mask[lo:hi]  # (rows, along): the band the line crosses, a few dozen rows
    centre = offset - lo + slope * np.arange(n_along)  # (along,) in the strip's rows
    near = strip & (np.abs(np.arange(hi - lo)[:, None] - centre[None, :]) <= reach)
    return lo, _fitted_line(strip, near) if near.any() else np.zeros_like(strip)


_WRITTEN_RUN = 8  # px along a rule: a pen stroke written on it is at least this long (the foot of a "1", a "2")


def _written_on(ink: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """(along,) bool: where a pen stroke runs on the rule. ``ink`` and ``rule`` (rows, along): the grey ink of
    the rule's strip and its pixels. The darkest ink on the rule, averaged over ``_WRITTEN_RUN`` px, stands
    out of the rule's own by 4 of its deviations and a fifth of its level, that long at least.

    The rule's own ink is measured along all of its length (``_along_line``), not only where the mask holds
    it: a rule too faint to be binarised is in the mask only where a pen wrote on it, and measured there
    alone the pen's ink would be the rule's (the foot of a "2" on a faint rule went with it, a confident 7).
    """
    on = cv2.dilate(rule.view(np.uint8), np.ones((3, 1), np.uint8)).view(bool)  # the rule and a pixel either side
    darkest = np.where(on, ink, 0.0).max(axis=0)  # (along,)
    if np.count_nonzero(rule.any(axis=0)) < 2 * _WRITTEN_RUN:
        return np.zeros(len(darkest), bool)
    line = _along_line(ink, rule)
    level = float(np.median(line))
    spread = float(np.median(np.abs(line - level)))
    window = np.ones(_WRITTEN_RUN) / _WRITTEN_RUN
    darker = np.convolve(darkest, window, mode="same") > level + max(4 * spread, 0.2 * level)
    # Runs at least _WRITTEN_RUN long: an opening of the (along,) run by that length.
    run = cv2.morphologyEx(
        darker.view(np.uint8)[None, :],
        cv2.MORPH_OPEN,
        _line(_WRITTEN_RUN, 1),
        borderType=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return run[0].view(bool)


def _along_line(ink: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """(along,) the darkest ink within a pixel of the straight line through ``rule``'s pixels (rows, along),
    at every position along the strip: the rule's own ink where the mask holds it and where it does not."""
    rows, cols = np.nonzero(rule)
    offset, slope = _least_squares_line(cols, rows)
    centre = offset + slope * np.arange(rule.shape[1])  # (along,)
    at = np.clip(np.round(centre).astype(np.intp)[None, :] + np.arange(-1, 2)[:, None], 0, rule.shape[0] - 1)
    return ink[at, np.arange(rule.shape[1])].max(axis=0)


def remove_rules(mask: np.ndarray, ink: np.ndarray | None = None, *, lines_in: np.ndarray | None = None) -> np.ndarray:
    """``mask`` without the lines of ruled or squared paper.

    A rule is a straight line through the whole image (``_rule_lines``, found in
    ``ink``, the grey ink strength the mask was cut from, or in the mask itself),
    with at least one more like it along the same axis (a single long stroke is
    a "1"). On paper found ruled that way, a line of the mask's own pixels
    through most of the image is a rule too (``_mask_lines``: one too faint in
    places to be found in the ink, the one grid line found across the other
    rules, or one fanned out from the others' lean or leaving the image through
    its side). On paper not found ruled, a lone line (found in the ink, or a
    level one in the mask) is a rule where it runs on past the rest of the
    writing at both ends (``_lone_rules``). Where the mask has pixels along a rule, a straight line is fitted
    to them and only the pixels along that line go; strokes that crossed it are
    joined again across the gap.

    ``lines_in``: another image (H, W) to find the rules in, where ``ink``
    still measures the strokes written on them.
    """
    h, w = mask.shape
    if min(h, w) < 64:  # a digit-sized image has no paper lines to speak of
        return mask
    given = ink is not None
    ink = mask.astype(np.float32) if ink is None else ink
    find_in = ink if lines_in is None else lines_in
    found_lines = {axis: _rule_lines(find_in, axis) for axis in (1, 0)}  # horizontal rules (along x), vertical ones
    masks = {1: mask, 0: np.ascontiguousarray(mask.T)}  # (across, along): rows across each axis's rules
    ruled = max(len(lines) for lines in found_lines.values()) >= 2
    if not ruled:  # a lone line may be a stroke: a rule only where it runs on past the writing
        found_lines = {axis: _lone_rules(masks[axis], lines, search_mask=axis == 1) for axis, lines in found_lines.items()}  # fmt: skip
        if not any(found_lines.values()):
            return mask
    rules = np.zeros_like(mask)
    for axis, lines in found_lines.items():
        found = rules if axis == 1 else rules.T  # (across, along) views: rows across the rules
        ink_mask = masks[axis]
        ink_along = ink if axis == 1 else ink.T
        # The slope of this axis's rules; a turned page tilts one axis's rules by the other's the other way.
        tilt = np.median([s for _, s in lines]) if lines else -np.median([s for _, s in found_lines[1 - axis]])
        if ruled:  # a lone line on ruled paper: in the mask, it must run through
            lines = (lines if len(lines) >= 2 else []) + _mask_lines(ink_mask, float(tilt))
        for offset, slope in lines:
            lo, pixels = _rule_pixels(ink_mask, offset, slope)
            if given:  # a stroke written on the rule stays: darker than the rule, as pen is than print
                pixels &= ~_written_on(ink_along[lo : lo + len(pixels)], pixels)
            found[lo : lo + len(pixels)] |= pixels
    if not rules.any():
        return mask
    kept = mask & ~rules
    # A stroke crossing a rule continues on both sides: close the gap across it.
    bridged = _closed(kept, _line(7, 0)) | _closed(kept, _line(7, 1))
    return kept | (bridged & rules & mask)


_BEYOND = 0.1  # a lone rule runs on past the writing by this share of the image's length at both ends ...
_WRITING = 64  # ... where the writing holds this many mask pixels at least (a stroke, not a few specks)
_LONE_SPAN = 0.6  # a lone rule looked for in the mask covers this share of the image's width at least


def _lone_rules(mask: np.ndarray, lines: list[tuple[float, float]], *, search_mask: bool) -> list[tuple[float, float]]:
    """The rules of ``mask`` (across, along) on paper not found ruled: ``lines`` (found in the ink) and, where
    ``search_mask`` (horizontal rules: the ones digits sit on), the lines of the mask itself (``_mask_lines``,
    level within their tilt) that run on past the writing at both ends (``_beyond_the_writing``).

    A rule a digit sits on is no ridge in the ink where the digit covers it,
    but in the mask it runs through. The mask is searched only where some band
    of rows holds ink across ``_LONE_SPAN`` of its length (few photos: a digit
    spans less, and a rule runs past it).
    """
    if search_mask:
        band = int(np.ceil(2 * _MASK_RULE_TILT * mask.shape[1])) + 3  # rows a line at the largest tilt spans
        reach = cv2.dilate(mask.view(np.uint8), np.ones((band, 1), np.uint8)).sum(axis=1)  # (across,) columns
        if reach.max() >= _LONE_SPAN * mask.shape[1]:
            lines = lines + _mask_lines(mask, 0.0)
    return [line for line in lines if _beyond_the_writing(mask, *line)]


def _beyond_the_writing(mask: np.ndarray, offset: float, slope: float) -> bool:
    """Whether a lone line (``_lone_rules``) is a rule: the mask's pixels along it (``mask``: across, along)
    run on past the rest of the mask (the 1st to 99th percentile of its positions along) at both ends.

    Where a photo shows one rule of the paper only, no second line says the
    paper is ruled; but a rule runs on past the writing, where a stroke long
    enough to be found (a "1" filling the image, a "7"'s bar in a tight crop)
    ends with its digit. Left, the rule read as part of the digit (a "7"
    standing on it as a "2").
    """
    lo, pixels = _rule_pixels(mask, offset, slope)
    rest = mask.copy()
    rest[lo : lo + len(pixels)] &= ~pixels
    along_line, along_rest = np.flatnonzero(pixels.any(axis=0)), np.nonzero(rest)[1]
    if along_line.size == 0 or along_rest.size < _WRITING:
        return False
    first, last = np.percentile(along_rest, [1, 99])
    margin = _BEYOND * mask.shape[1]
    return bool(along_line[0] < first - margin and along_line[-1] > last + margin)


_MASK_RULE_SPAN = 0.7  # a line of mask pixels through this share of the image (where it is inside) is a rule
_MASK_RULE_TILT = 0.06  # its slope may differ from the axis's by this much: shear and perspective fan a grid out
_MASK_RULE_INSIDE = 0.5  # and it must be inside the image for half the length at least


def _mask_lines(mask: np.ndarray, slope: float) -> list[tuple[float, float]]:
    """Lines (offset, slope) of ``mask`` (across, along) at about ``slope``: rows of the mask sheared by each
    slope within ``_MASK_RULE_TILT`` of it that hold pixels in at least ``_MASK_RULE_SPAN`` of the positions
    along where they lie inside the image. One per line: the same line found at neighbouring slopes is
    kept where it covers most.

    A grid's lines are not parallel in a photo: a sheared or tilted page fans
    them out by several hundredths, and a line near the image's side leaves it
    through that side. At the axis's own slope alone, such a line's pixels
    spread over too many rows (or over too little of the length) to count.
    The lines are looked for at half the resolution (2x2 px cells holding any
    of the mask), a quarter of the pixels and half the slopes: ``_rule_pixels``
    fits each line to the full mask's pixels within a few rows of it anyway.
    """
    even = mask[: mask.shape[0] // 2 * 2, : mask.shape[1] // 2 * 2].view(np.uint8) * np.uint8(255)
    half = cv2.resize(even, (even.shape[1] // 2, even.shape[0] // 2), interpolation=cv2.INTER_AREA)
    across, along = np.nonzero(half)  # any of the cell's 4 pixels: a mean of 64 or more
    if across.size == 0:
        return []
    (n_across, n_along), step = half.shape, 2.0 / half.shape[1]  # slopes a step apart: 1 row apart at the ends
    slopes = slope + step * np.arange(-np.ceil(_MASK_RULE_TILT / step), np.ceil(_MASK_RULE_TILT / step) + 1)
    rows = np.round(across[None, :] - slopes[:, None] * along[None, :]).astype(np.intp)  # (slopes, pixels)
    lo = int(rows.min())
    n_rows = int(rows.max()) - lo + 3
    # (slopes, sheared rows + 2, along): the positions covered in each sheared row and its two neighbours
    # (a line's pixels step across rows), once each.
    cover = np.zeros((len(slopes), n_rows, n_along), bool)
    which = np.broadcast_to(np.arange(len(slopes))[:, None], rows.shape)
    for shift in (0, 1, 2):
        cover[which, rows - lo + shift, along[None, :]] = True
    count = cover.sum(axis=2)  # (slopes, rows)
    offsets = np.arange(n_rows) + lo - 1.0  # each sheared row's line: across = offset + slope * along
    with np.errstate(divide="ignore", invalid="ignore"):  # where along = 0 would need slope 0: see below
        t0, t1 = -offsets[None, :] / slopes[:, None], (n_across - offsets[None, :]) / slopes[:, None]
        inside = np.clip(np.minimum(np.maximum(t0, t1), n_along) - np.maximum(np.minimum(t0, t1), 0.0), 0.0, None)
    flat = np.abs(slopes) < 1e-9  # a level line is inside all along, or not at all
    inside[flat] = np.where((offsets >= 0) & (offsets < n_across), float(n_along), 0.0)
    strong = (count >= _MASK_RULE_SPAN * inside) & (inside >= _MASK_RULE_INSIDE * n_along)
    padded = np.pad(count, ((0, 0), (1, 1)))
    peaks = strong & (count >= np.maximum(padded[:, :-2], padded[:, 2:]))
    peaks[:, 1:] &= ~(peaks[:, :-1] & (count[:, 1:] == count[:, :-1]))  # a flat top is one line
    found = sorted(zip(*np.nonzero(peaks)), key=lambda sr: -count[sr])  # most covered first
    kept: list[tuple[float, float]] = []
    for i, r in found:
        offset, s = float(offsets[r]), float(slopes[i])
        middle = offset + s * n_along / 2
        if all(abs(middle - (o + t * n_along / 2)) > 2 for o, t in kept):
            kept.append((offset, s))
    return [(2 * offset + 0.5, s) for offset, s in kept]  # a cell's row i holds full rows 2i and 2i + 1
