"""What counts as "digit pixels", in one place.

MNIST stores a digit as 28 x 28 uint8 intensities, 0 (paper) to 255 (ink).
Users bring the same thing as flat rows (N x 784), image stacks (N x 28 x 28,
N x 1 x 28 x 28 as torch lays them out, or N x 28 x 28 x 1 as Keras does), or floats in [0, 1]. Every model,
figure and predictor goes through these functions, so each accepts the same
inputs and refuses the same mistakes with the same sentence.
"""

from __future__ import annotations

import math

import numpy as np

from mnistlab.errors import InputError

__all__ = [
    "UNIT_SCALE_MAX",
    "UNDO_NORMALISING",
    "float_scale",
    "from_torch",
    "as_images",
    "as_rows",
    "unit_pixels",
    "normalised_paper",
    "refuse_one_image",
    "as_digit",
]

# Floats whose brightest value is at most this are on the 0-1 scale, others on 0-255. Not 1: a 0-1
# image resampled (bicubic, Lanczos) overshoots 1 by a tenth or two, and read as 0-255 it would be a
# blank page; on the 0-255 scale, nothing brighter than 1.5 is blank paper either way.
UNIT_SCALE_MAX = 1.5


def float_scale(brightest):
    """The full-ink value (1.0 or 255.0) of float pixels whose brightest is ``brightest`` (a number or array)."""
    return np.where(np.asarray(brightest) > UNIT_SCALE_MAX, 255.0, 1.0)


def from_torch(values):
    """A torch tensor as a numpy array, detached from autograd and on the CPU (numpy takes neither a tensor that
    requires grad nor one on a GPU); anything else as it is."""
    if type(values).__module__.split(".")[0] == "torch" and callable(getattr(values, "detach", None)):
        return values.detach().cpu().numpy()
    return values


def as_images(X, *, what: str = "images") -> np.ndarray:
    """(N, H, W) view of flat square rows (N, side*side), images (N, H, W), (N, 1, H, W) or (N, H, W, 1); no copy.

    Flat rows must be square images flattened row by row (784 = 28 x 28).
    """
    X = np.asarray(from_torch(X))
    if X.ndim == 4 and X.shape[1] == 1:
        return X[:, 0]
    if X.ndim == 4 and X.shape[3] == 1:  # channels last, as Keras and TensorFlow lay MNIST out
        return X[..., 0]
    if X.ndim == 3:
        return X
    if X.ndim != 2:
        raise InputError(
            f"{what} have shape {X.shape}, expected N x 784 rows or N x 28 x 28 images (or N x 1 x 28 x 28, "
            "N x 28 x 28 x 1: one grey channel)."
        )
    side = math.isqrt(X.shape[1])
    if side * side != X.shape[1]:
        # One 28 x 28 digit is 28 rows of 28 pixels: say how to pass it, not only what a row should hold.
        one = f" (a {len(X)} x {X.shape[1]} array is one image? pass it as a batch of one, image[None])"
        raise InputError(
            f"{what} have {X.shape[1]} pixels per row, expected a square number such as 784 (28 x 28) flattened row "
            f"by row{one if len(X) == X.shape[1] else ''}."
        )
    return X.reshape(len(X), side, side)


def as_rows(X):
    """A stack of square images (as ``as_images`` takes them: N x H x W, one grey channel first or last) as the flat
    rows N x H*W that every recipe reads (k-NN and the SGD lesson take no stack); anything else as it is."""
    X = from_torch(X)
    if np.ndim(X) not in (3, 4):
        return X
    try:
        images = as_images(X)
    except InputError:  # four axes and no grey channel: left to the model's own sentence
        return X
    return images.reshape(len(images), -1) if images.shape[1] == images.shape[2] else X


def unit_pixels(X: np.ndarray) -> np.ndarray:
    """Pixels of any numeric dtype -> a float32 copy in [0, 1], same shape.

    Integers are on the 0-255 scale (values outside it are refused). Floats are
    taken as [0, 1], except images whose brightest pixel exceeds ``UNIT_SCALE_MAX``,
    which are taken as 0-255 and divided by 255; each image (first axis) is
    judged on its own, so ``load_mnist(dtype=float)`` output and raw float
    pixels both work. Floats are then clipped to [0, 1] (a resampled image's
    overshoot).
    """
    X = np.asarray(X)
    if X.dtype.kind == "b":
        return X.astype(np.float32)
    if X.dtype.kind in "iu":
        if X.size and (X.min() < 0 or X.max() > 255):
            raise InputError(
                f"Integer pixels must lie in 0-255, got values from {X.min()} to {X.max()}; "
                "pass uint8 images or floats in [0, 1]."
            )
        return X.astype(np.float32) / np.float32(255)
    if X.dtype.kind != "f":
        raise InputError(f"Pixels must be numbers, got dtype {X.dtype}; pass uint8 images or floats in [0, 1].")
    out = X.astype(np.float32)  # a copy we may scale in place
    if out.size and not np.isfinite(out).all():
        raise InputError("Pixels contain NaN or infinite values; pass finite numbers from 0 to 255 (or 0 to 1).")
    _refuse_normalised(out)
    if out.ndim >= 2 and out.size:  # an empty batch has nothing to scale (and no -1 numpy can reshape to)
        brightest = out.reshape(len(out), -1).max(axis=1, initial=0)
        out[brightest > UNIT_SCALE_MAX] /= np.float32(255)
    elif out.size and out.max() > UNIT_SCALE_MAX:
        out /= np.float32(255)
    return np.clip(out, 0, 1, out=out)


def _refuse_normalised(pixels: np.ndarray) -> None:
    """Refuse floats on the 0-255 scale whose paper is below 0: more than half of them at their lowest value, and
    that value negative, as digits normalised by a mean and a standard deviation are (torchvision's
    ``Normalize((0.1307,), (0.3081,))``: paper -0.4242, full ink 2.8215). Read as 0-255 pixels they were a blank
    page, and every model answered without a word (a CNN read 13% of MNIST's test digits right, logistic regression
    10%). A 0-1 image whose paper a resampling left a little below 0 is clipped, as the reader clips it."""
    low = normalised_paper(pixels)
    if low is not None:
        raise InputError(f"Pixels look normalised: most of them are {low:.4g}, below 0 (paper); {UNDO_NORMALISING}")


UNDO_NORMALISING = (
    "pass the pixels as they were before normalising, 0-255 or 0-1 (multiply by the standard deviation, then add the "
    "mean)."
)


def normalised_paper(pixels: np.ndarray) -> float | None:
    """The paper's value of float pixels normalised by a mean and a standard deviation (``_refuse_normalised``), or
    None for pixels that are not: on the 0-255 scale, more than half of them at their lowest value, below 0."""
    low = float(pixels.min(initial=0))
    if low < 0 and pixels.max() > UNIT_SCALE_MAX and 2 * np.count_nonzero(pixels == low) > pixels.size:
        return low
    return None


def refuse_one_image(X, n_pixels: int) -> None:
    """Refuse one square image of ``n_pixels`` (a 28 x 28 digit) where a batch of images belongs: scikit-learn took
    its rows for 28 images of 28 pixels each, and said "X has 28 features, but ... is expecting 784 features"."""
    side = math.isqrt(n_pixels)
    if side * side == n_pixels and side > 1 and np.shape(X) == (side, side):
        raise InputError(f"X is one {side} x {side} image, not a batch of images; pass it as a batch of one, X[None].")


def as_digit(values, *, label: str = "the array") -> np.ndarray:
    """One (28, 28) uint8 digit from 784 values (flat or 28 x 28), 0-255 or 0-1 floats."""
    try:
        a = np.asarray(from_torch(values))
    except (ValueError, TypeError):  # nested lists of different lengths: numpy refuses to make one array
        raise InputError(
            f"{label} has rows of different lengths (or is not numbers); expected 784 values or a 28x28 array "
            "(one digit)."
        ) from None
    if a.ndim == 0:  # None, bytes, a dict, one number: "got 1 values with shape ()" said nothing of what it was
        shown = repr(values.item() if isinstance(values, np.ndarray) else values)
        raise InputError(
            f"{label} is one value ({shown[:40]}), not a digit's pixels; pass 784 values or a 28x28 array (one digit)."
        )
    if a.size != 784 or a.squeeze().shape not in ((784,), (28, 28)):
        raise InputError(
            f"{label}: got {a.size} values with shape {a.shape}, expected 784 values or a 28x28 array (one digit)."
        )
    if a.dtype.kind not in "uifb":
        raise InputError(f"{label} holds {a.dtype} values, expected numbers from 0 to 255.")
    if a.dtype.kind in "iu" and UNIT_SCALE_MAX < a.max() <= 255 and a.min() >= 0:
        return a.astype(np.uint8).reshape(28, 28)  # 0-255 already: what the steps below make of it, at a third the cost
    a = a.astype(np.float64).reshape(28, 28)
    if not np.isfinite(a).all():
        raise InputError(f"{label} holds NaN or infinite values; expected pixel values from 0 to 255 (or 0 to 1).")
    scale = float(float_scale(a.max()))
    # A resampled 0-1 digit's overshoot is clipped; on the 0-255 scale, values outside it are a mistake.
    if a.min() < (-0.5 if scale == 1 else 0) or (scale == 255 and a.max() > 255):
        raise InputError(f"{label} has values outside 0-255; expected pixel values from 0 to 255 (or 0 to 1).")
    return np.rint(np.clip(a * (255 / scale), 0, 255)).astype(np.uint8)
