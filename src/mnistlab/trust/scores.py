"""Measures of how much a 28x28 image looks like an MNIST digit, none of them the classifier's.

A classifier answers every input with some digit, often at 99%. These scores
say whether the input deserves an answer at all; large means unlike a digit:

* ``reconstruction_error``: what a 50-component PCA of MNIST training digits
  cannot express, relative to the image's own ink (a texture, a face, a shoe);
* ``ink_fraction`` (both tails): far too little or far too much ink;
* ``blobs``: separate pieces of ink (noise, dust, two digits apart);
* ``stroke_width`` (both tails): strokes far thinner or thicker than a pen's;
* ``not_a_digit``: the detector's probability (``trust.detector``), the one
  score that tells a clean "C" or "T" from a "0" or "7".

All of it is a few matrix products and one net: cheap enough per request.
Nothing here imports scipy: a prediction starts faster without it (its
``ndimage`` alone took about 0.2 s to import, more than the rest of the
reading path together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistlab.reading.paper import components
from mnistlab.reading.width import edge_distance

__all__ = ["SCORES", "TWO_SIDED", "DigitSpace", "fit_digit_space", "digit_scores", "silhouette"]

SCORES = ("reconstruction_error", "ink_fraction", "blobs", "stroke_width", "not_a_digit")
TWO_SIDED = frozenset({"ink_fraction", "stroke_width"})


@dataclass(frozen=True)
class DigitSpace:
    """PCA of MNIST training digits, pixels in [0, 1]."""

    mean: np.ndarray  # (784,) float32
    components: np.ndarray  # (k, 784) float32, orthonormal rows


def fit_digit_space(images: np.ndarray, k: int = 50) -> DigitSpace:
    """The top ``k`` principal components of (N, 28, 28) uint8 digits."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    mean = x.mean(0)
    _, vecs = np.linalg.eigh(np.cov(x - mean, rowvar=False))  # ascending: the last k are the top components
    components = vecs[:, ::-1][:, :k].T
    return DigitSpace(mean.astype(np.float32), np.ascontiguousarray(components, np.float32))


def silhouette(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> the ink's shape only: thresholded at 40% of each image's brightest pixel, blurred 0.8 px.

    The detector judges shape. Grey levels inside strokes differ between MNIST's
    scans, a phone photo and a font rendering; a net shown them all learns those
    textures instead of shapes. After this step they look alike.
    """
    x = images.reshape(-1, 28, 28).astype(np.float32)
    mask = (x > 0.4 * np.maximum(x.max(axis=(1, 2), keepdims=True), 1)).astype(np.float32)
    return np.round(_blurred(_blurred(mask, 1), 2) * 255).astype(np.uint8)


# The blur the detector was trained with: scipy's ``ndimage.gaussian_filter(mask, (0, 0.8, 0.8))``, bit for bit
# (tests/test_reader.py compares them): its weights (sigma 0.8, cut at 4 sigma: 7 taps), its "reflect" border
# (c b a | a b c | c b a), and its arithmetic: each pass sums in float64, the centre first and then the pairs
# of taps from the outside in, and stores float32.
_SIGMA = 0.8
_RADIUS = int(4.0 * _SIGMA + 0.5)
_TAPS = np.exp(-0.5 / (_SIGMA * _SIGMA) * np.arange(-_RADIUS, _RADIUS + 1) ** 2)
_TAPS = _TAPS / _TAPS.sum()
_REFLECTED = np.r_[_RADIUS - 1 : -1 : -1, 0:28, 27 : 27 - _RADIUS : -1]  # (34,): a 28 px line and its borders


def _blurred(x: np.ndarray, axis: int) -> np.ndarray:
    """(N, 28, 28) float32 ``x`` blurred along ``axis`` (1: columns, 2: rows) as ``silhouette`` says."""
    padded = np.take(x, _REFLECTED, axis=axis).astype(np.float64)  # (N, 34, 28) or (N, 28, 34)

    def shifted(by: int) -> np.ndarray:  # (N, 28, 28): each pixel's neighbour ``by`` px along ``axis``
        part = slice(_RADIUS + by, _RADIUS + by + 28)
        return padded[:, part] if axis == 1 else padded[:, :, part]

    total = shifted(0) * _TAPS[_RADIUS]
    for k in range(_RADIUS, 0, -1):
        total += (shifted(-k) + shifted(k)) * _TAPS[_RADIUS - k]
    return total.astype(np.float32)


def _blobs_and_width(img: np.ndarray) -> tuple[int, float]:
    n, labels = components(img > 76)
    blobs = int((np.bincount(labels.ravel(), minlength=n)[1:] >= 2).sum())
    core = img > 127
    if not core.any():
        return blobs, 0.0
    return blobs, 2 * float(edge_distance(core)[core].mean())


def digit_scores(space: DigitSpace, images: np.ndarray, not_a_digit: np.ndarray) -> np.ndarray:
    """(N, len(SCORES)) float64 scores of (N, 28, 28) uint8 images, given the detector's (N,) probabilities."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0  # (N, 784)
    centred = x - space.mean
    residual = centred - (centred @ space.components.T) @ space.components  # (N, 784)
    recon = (residual**2).sum(1) / np.maximum((x**2).sum(1), 1e-6)
    blobs_width = np.array([_blobs_and_width(img) for img in images.reshape(-1, 28, 28)], np.float64).reshape(-1, 2)
    return np.column_stack([recon, x.mean(1), blobs_width[:, 0], blobs_width[:, 1], np.asarray(not_a_digit)])
