"""Reusable scikit-learn transformers for digit images.

All transformers take flat N x 784 rows (or N x 28 x 28 images), uint8 0-255 or
float, and return flat float32 rows so that they chain inside a ``Pipeline``.
They are stateless: ``fit`` only records the input width (and the column names of a
DataFrame). Output pixel i is input pixel i moved or scaled, so each names its output
columns as its input's (``get_feature_names_out``), and ``set_output`` works.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mnistlab.data.pixels import as_images, refuse_one_image, unit_pixels
from mnistlab.errors import InputError

__all__ = ["PixelScaler", "Deskew", "image_moments"]

# Images are processed in chunks so that the float32 intermediates of a 70,000
# image batch stay around 100 MB instead of several GB.
_CHUNK = 8192


class PixelScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale pixel intensities from 0..``max_value`` to float32 0..1.

    Unlike ``StandardScaler`` it keeps blank border pixels at exactly 0 and
    needs no statistics, so one scaled digit means the same in every model.
    With the default ``max_value`` (255), float pixels are read as every
    mnistlab model reads them (``unit_pixels``): each row on the 0-1 scale
    (``load_mnist(dtype=np.float32)``) or on 0-255, whichever it is. Booleans (a
    mask, ``img > 128``) are 0 and 1, as every mnistlab model reads them.
    """

    def __init__(self, max_value: float = 255.0):
        self.max_value = max_value

    def fit(self, X, y=None):
        v = self.max_value
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not 0 < v < np.inf:
            raise InputError(f"PixelScaler max_value must be a positive finite number, got {v!r}.")
        validate_data(self, _flat(X), reset=True, dtype="numeric")  # refuses 1-d, empty, NaN, sparse, complex
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        refuse_one_image(X, self.n_features_in_)  # a digit's 28 rows were taken for 28 images of 28 pixels
        X = validate_data(self, _flat(X), reset=False, dtype="numeric")  # and a width other than fit's
        if X.dtype.kind == "b" or (X.dtype.kind == "f" and self.max_value == 255):  # a mask's True is ink, 1.0
            return unit_pixels(X)
        return np.multiply(X, np.float32(1.0 / self.max_value), dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # every output is float32, as the models read it
        return tags


def _flat(X):
    """Image stacks (N, H, W) or (N, 1, H, W) as rows (N, H*W); anything else as it is, for scikit-learn's checks."""
    X = X if hasattr(X, "ndim") else np.asarray(X)
    return X.reshape(len(X), -1) if X.ndim in (3, 4) else X


def image_moments(images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass and skew of each image.

    Returns ``(row_centre, col_centre, skew)``, each of shape (N,), where
    ``skew = cov(col, row) / var(row)`` of the ink distribution: how many
    columns the strokes drift right per row down. An upright digit has skew
    ~0; blank images get the centre (h/2, w/2) and skew 0, so Deskew leaves them be.
    """
    # C order: sums over a strided view (a Fortran-ordered array) would add in another order, other floats.
    imgs = np.ascontiguousarray(as_images(images), dtype=np.float32)
    n, h, w = imgs.shape
    rows = np.arange(h, dtype=np.float32)
    cols = np.arange(w, dtype=np.float32)
    row_mass = imgs.sum(axis=2)  # (N, h): ink per row
    col_mass = imgs.sum(axis=1)  # (N, w): ink per column
    mass = row_mass.sum(axis=1)
    blank = mass <= 0
    mass = np.where(blank, 1.0, mass)
    cy = np.where(blank, h / 2, row_mass @ rows / mass)
    cx = np.where(blank, w / 2, col_mass @ cols / mass)
    dr = rows[None, :] - cy[:, None]  # (N, h)
    var_row = (row_mass * dr**2).sum(axis=1) / mass
    # cov = sum_ij I_ij dr_i dc_j, computed as sum_i dr_i (sum_j I_ij c_j - cx row_mass_i): one matmul.
    cov = (dr * (imgs @ cols - cx[:, None] * row_mass)).sum(axis=1) / mass
    skew = np.where(var_row > 1e-6, cov / np.maximum(var_row, 1e-6), 0.0)
    return cy.astype(np.float64), cx.astype(np.float64), skew.astype(np.float64)


def _deskew_chunk(imgs: np.ndarray) -> np.ndarray:
    """Shear each image upright and move its centre of mass to the centre.

    The sampling map from output pixel (r, c) to input coordinates is
    ``in_r = r + cy - ctr`` and ``in_c = c + cx - ctr + skew * (r - ctr)``:
    the row offset is constant per image and the column offset constant per
    output row, so bilinear sampling splits into a vertical then a horizontal
    linear interpolation, each a gather over the whole batch.
    """
    n, h, w = imgs.shape
    cy, cx, skew = image_moments(imgs)
    # MNIST centres digits by mass at (h/2, w/2) = (14, 14) in pixel-index units,
    # so an upright digit stays put.
    ctr_r, ctr_c = h / 2, w / 2
    pad = 2  # zero border: indices are clipped into it, so outside the image reads as blank
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = np.zeros((n, hp, wp), dtype=np.float32)
    padded[:, pad:-pad, pad:-pad] = imgs
    # Output pixel k reads source k + shift: the integer part of the shift moves
    # the index, the fraction (the same for a whole row or image) weighs the two
    # neighbours. Indices clipped to [-pad, size] read two zeros, which is exactly
    # what a coordinate beyond the border should give. Gathers use np.take on flat
    # arrays, several times faster than multi-dimensional fancy indexing.

    # Vertical: one interpolated source row per output row, (N*h, w + 2*pad).
    dy = cy - ctr_r  # (N,)
    dy0 = np.floor(dy)
    fy = (dy - dy0).astype(np.float32).repeat(h)[:, None]  # (N*h, 1)
    src = np.clip(np.arange(h)[None, :] + dy0.astype(np.intp)[:, None], -pad, h) + pad  # (N, h)
    top = (src + (np.arange(n) * hp)[:, None]).ravel()
    rows = padded.reshape(n * hp, wp)
    vert = np.take(rows, top, axis=0) * (1 - fy) + np.take(rows, top + 1, axis=0) * fy

    # Horizontal: each output row shifted by its own offset, (N*h, w).
    dx = ((cx - ctr_c)[:, None] + skew[:, None] * (np.arange(h)[None, :] - ctr_r)).ravel()  # (N*h,)
    dx0 = np.floor(dx)
    fx = (dx - dx0).astype(np.float32)[:, None]
    src = np.clip(np.arange(w)[None, :] + dx0.astype(np.intp)[:, None], -pad, w) + pad  # (N*h, w)
    left = src + (np.arange(n * h) * wp)[:, None]
    flat = vert.ravel()
    out = np.take(flat, left) * (1 - fx) + np.take(flat, left + 1) * fx
    return out.reshape(n, h, w)


class Deskew(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Straighten slanted digits using image moments (the classic MNIST deskew).

    Each image is shifted so that its centre of mass sits at the image centre
    and sheared horizontally by ``-cov(col, row) / var(row)``, so that its
    principal vertical axis becomes upright. Bilinear sampling, vectorised
    over the batch (about 1.8 s of CPU for all 70,000 MNIST digits). Output: float32
    rows in the input's intensity units.
    """

    def fit(self, X, y=None):
        _checked_images(self, X, reset=True)
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        imgs = _checked_images(self, X, reset=False)
        n, h, w = imgs.shape
        out = np.empty((n, h * w), dtype=np.float32)
        for start in range(0, n, _CHUNK):
            chunk = np.ascontiguousarray(imgs[start : start + _CHUNK], dtype=np.float32)  # as image_moments
            out[start : start + len(chunk)] = _deskew_chunk(chunk).reshape(len(chunk), -1)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # every output is float32, as PixelScaler's
        return tags


def _checked_images(estimator: Deskew, X, *, reset: bool) -> np.ndarray:
    """X as images (N, H, W): a shape that is no batch of square images, or another pixel count than fit's,
    in mnistlab's sentence; sparse, complex, NaN, infinite and empty input refused (scikit-learn's checks,
    which also record ``n_features_in_`` when ``reset``)."""
    if issparse(X):
        raise InputError("Deskew takes dense pixels, got a sparse matrix; pass X.toarray().")
    n, h, w = as_images(X).shape  # no copy
    if not reset and h * w != estimator.n_features_in_:
        raise InputError(f"Deskew was fitted on {estimator.n_features_in_} pixels per image, got {h * w}.")
    rows = validate_data(estimator, _flat(X), reset=reset, dtype="numeric")  # no copy of uint8 rows
    return rows.reshape(n, h, w)
