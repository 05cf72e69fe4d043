"""A small CNN that tells "a digit" from "not a digit", trained once per machine.

The classifier-free scores in ``_calibration`` (PCA distance, ink, blobs,
stroke width) catch empty pages, noise and textures, but a printed letter
such as C, U or T is made of clean pen-like strokes and passes them all; the
classifier then reads it as 0 or 7 at 99%. What separates a "C" from a "0" is
shape, so a net has to learn it from examples of both.

Digits: the first 50,000 MNIST training digits, and the digits 0-9 printed in the fonts
that ship with matplotlib (so "printed" is not the cue). Negatives, none of
them from the generators in ``_synthetic`` that the tests and benchmarks use
(whose letters are in Pillow's own font, which is not among these):

* letters and symbols printed in those fonts (DejaVu, STIX, Computer Modern),
  except the ones that look like digits (O, I, l, S, Z, B, g, q, ...);
* pairs of MNIST digits side by side or on top of each other;
* random pen strokes (Bezier curves), outlines of polygons and ellipses,
  filled shapes, and thresholded smooth noise.

Every image goes through the same geometry as ``to_mnist`` (crop to the ink,
longer side to 20 px, centre of mass in 28 x 28), so the net sees what the
classifier sees, and as a silhouette (``silhouette``), so it judges shape and
not grey-level texture. The net is the ``small`` CNN of ``_cnn_model`` with 11
outputs (the ten digits and "not a digit"); its probability of "not a digit"
becomes one more score in ``_calibration``, thresholded on MNIST digits it
never saw. Building it takes ~2 minutes on one CPU core (15 s to draw ~90,000
images, the rest to fit 4 epochs), once: the weights are cached as safetensors
in the user cache, keyed by the MNIST training data's sha256.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ._handwriting import center_by_mass, crop_to_ink, fit_to_box

__all__ = [
    "DETECTOR_VERSION",
    "FIT_DIGITS",
    "non_digits",
    "training_set",
    "held_out_non_digits",
    "fit_detector",
    "silhouette",
    "non_digit_probability",
    "digit_detector",
    "detector_ready",
]

DETECTOR_VERSION = 4  # bump when the training set or the net changes: cached detectors and calibrations go stale
# The first 50,000 training digits fit the detector (and _calibration's PCA space);
# the last 10,000 are kept out of both, so their scores are fair calibration data.
FIT_DIGITS = 50_000
_CANVAS = 64  # strokes and glyphs are drawn on a 64 x 64 canvas, then brought to MNIST geometry
# Letters and symbols that are not digits. Left out, as fair readings of a digit
# when written by hand: O o Q D (0), I l i j J | ! ( ) [ ] { } / \ (1), Z z (2),
# S s (5), b G (6), B (8), g q (9).
_LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxyαβγδεζηθλμξπρσφψωΓΔΘΛΞΠΣΦΨΩ#@%&?*=<>~^$€£¥§¶"
_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf",
    "cmtt10.ttf", "cmti10.ttf",
)


def _mnist_geometry(ink: np.ndarray) -> np.ndarray:
    """(H, W) float ink in [0, 1] -> (28, 28) uint8, the way ``to_mnist`` places a digit."""
    return center_by_mass(fit_to_box(crop_to_ink(ink)))


def _font_paths() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in _FONTS if (folder / name).is_file()]


def _glyph(font: ImageFont.FreeTypeFont, char: str, rng: np.random.Generator) -> np.ndarray:
    im = Image.new("F", (_CANVAS * 2, _CANVAS * 2), 0.0)
    ImageDraw.Draw(im).text((_CANVAS // 2, _CANVAS // 4), char, fill=1.0, font=font)
    ink = np.asarray(im)
    # A pen is thicker than most fonts' strokes: thicken by 0-4 px (at ~60 px glyph height).
    grow = int(rng.integers(0, 5))
    if grow:
        ink = ndimage.grey_dilation(ink, size=(grow, grow))
    return ndimage.rotate(ink, rng.uniform(-12, 12), reshape=False, order=1)


def _glyphs(chars: str, rng: np.random.Generator, copies: int) -> tuple[np.ndarray, np.ndarray]:
    """Each char in each font, ``copies`` times: images (N, 28, 28) uint8 and each one's index in ``chars``."""
    images, which = [], []
    for path in _font_paths():
        font = ImageFont.truetype(str(path), size=56)
        for k, char in enumerate(chars):
            if font.getbbox(char)[2] <= 0:
                continue
            for _ in range(copies):
                images.append(_mnist_geometry(_glyph(font, char, rng)))
                which.append(k)
    return np.stack(images), np.asarray(which, np.int64)


def _strokes(rng: np.random.Generator) -> np.ndarray:
    """2-4 random cubic Bezier pen strokes, a polygon outline (crossed half the time), or 2-4 filled boxes and ellipses."""
    im = Image.new("F", (_CANVAS, _CANVAS), 0.0)
    draw = ImageDraw.Draw(im)
    width = int(rng.integers(3, 8))
    kind = rng.integers(4)
    if kind <= 1:
        t = np.linspace(0, 1, 40)[:, None]
        for _ in range(int(rng.integers(2 if kind == 0 else 3, 5))):
            p = rng.uniform(4, _CANVAS - 4, (4, 2))  # control points
            curve = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
            draw.line([tuple(q) for q in curve], fill=1.0, width=width, joint="curve")
    elif kind == 2:
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(12, 30, n)
        pts = [(32 + r * np.cos(a), 32 + r * np.sin(a)) for r, a in zip(radius, angles)]
        # (ImageDraw.polygon draws nothing on a float image when given a width: lines instead.)
        draw.line(pts + [pts[0]], fill=1.0, width=width, joint="curve")
        if rng.random() < 0.5:
            draw.line([pts[0], pts[len(pts) // 2]], fill=1.0, width=width)  # a crossed outline
    else:
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = rng.uniform(0, 40, 2)
            x1, y1 = x0 + rng.uniform(8, 24), y0 + rng.uniform(8, 24)
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=float(rng.uniform(0.5, 1)))
    return np.asarray(im)


def _noise(rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.random((_CANVAS, _CANVAS)), rng.uniform(1.5, 5))
    return (field > np.quantile(field, rng.uniform(0.75, 0.95))).astype(np.float32)


def _pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two 28x28 digits side by side (overlapping a little) or drawn on top of each other."""
    a, b = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    if rng.random() < 0.5:
        canvas = np.zeros((28, 56), np.float32)
        gap = int(rng.integers(10, 22))
        canvas[:, :28] = a
        canvas[:, gap : gap + 28] = np.maximum(canvas[:, gap : gap + 28], b)
        return canvas
    dy, dx = rng.integers(-4, 5, 2)
    return np.maximum(a, np.roll(b, (dy, dx), axis=(0, 1)))


def non_digits(
    digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, copies: int = 6, n_strokes: int = 10000
) -> np.ndarray:
    """(N, 28, 28) uint8 images that are not digits: letters, pairs of digits, strokes, noise."""
    i, j = rng.integers(len(digits), size=(2, n_strokes))
    keep = labels[i] != labels[j]  # two different digits; "11" overlapped would still be a 1
    return np.concatenate([
        _glyphs(_LETTERS, rng, copies=copies)[0],
        np.stack([_mnist_geometry(_pair(digits[a], digits[b], rng)) for a, b in zip(i[keep], j[keep])]),
        np.stack([_mnist_geometry(_strokes(rng)) for _ in range(n_strokes)]),
        np.stack([_mnist_geometry(_noise(rng)) for _ in range(n_strokes // 6)]),
    ])


def training_set(
    digits: np.ndarray, labels: np.ndarray, seed: int = 0, *, stride: int = 1, copies: int = 6, n_strokes: int = 10000
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, y (N,)) from MNIST training digits: y is the digit, or 10 for "not a digit".

    Ten classes of digits rather than one: learning which digit it is makes the
    net look at the details that tell a "0" from a "C" (one comparison: printed
    letters flagged rose from 73% to 83% at a 0.2% false-flag rate on digits).
    """
    rng = np.random.default_rng(seed)
    printed, printed_digit = _glyphs("0123456789", rng, copies=2 * copies)
    neg = non_digits(digits, labels, rng, copies=copies, n_strokes=n_strokes)
    images = np.concatenate([digits[::stride], printed, neg])
    y = np.concatenate([labels[::stride], printed_digit, np.full(len(neg), 10, np.int64)])
    return images, y


def held_out_non_digits(digits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """~3,000 non-digits the detector never saw (seed 1; it trained on seed 0), for calibration."""
    return non_digits(digits, labels, np.random.default_rng(1), copies=1, n_strokes=1000)


def fit_detector(images: np.ndarray, y: np.ndarray, seed: int = 0):
    from ._cnn import CNNClassifier

    return CNNClassifier(
        arch="small", epochs=4, batch_size=256, lr=0.2, augment="light", random_state=seed, n_threads=1
    ).fit(silhouette(images), y)


def silhouette(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> the ink's shape only: thresholded at 40% and blurred (0.8 px).

    The detector judges shape. Grey levels inside the strokes differ between
    MNIST's scans, a phone photo of paper and a font rendering, and a net
    shown them all learns those textures instead of shapes (it flagged 29% of
    photographed digits); after this step they look alike.
    """
    x = images.reshape(-1, 28, 28).astype(np.float32)
    mask = (x > 0.4 * np.maximum(x.max(axis=(1, 2), keepdims=True), 1)).astype(np.float32)
    return np.round(ndimage.gaussian_filter(mask, (0, 0.8, 0.8)) * 255).astype(np.uint8)


def non_digit_probability(detector, images: np.ndarray) -> np.ndarray:
    """(N,) probability that each (N, 28, 28) uint8 image is not a digit."""
    return detector.predict_proba(silhouette(images))[:, -1]


_DETECTORS: dict[Path, object] = {}


def _detector_path() -> Path:
    from ._datasets import cache_root
    from ._load import load_mnist

    sha = load_mnist("mnist").details["data_sha256"]
    return cache_root() / "calibration" / f"digit-detector-{sha[:16]}-v{DETECTOR_VERSION}.safetensors"


def detector_ready() -> bool:
    """Whether ``digit_detector()`` will return at once (in memory or in the user cache)."""
    path = _detector_path()
    return path in _DETECTORS or path.is_file()


def digit_detector():
    """The detector for this machine's MNIST: from memory, the user cache, or fitted
    (~2 minutes on one CPU core, once) and cached as safetensors + JSON config."""
    from safetensors import safe_open
    from safetensors.numpy import save

    from ._atomic import atomic_write_bytes
    from ._cnn import CNNClassifier
    from ._load import load_mnist

    path = _detector_path()
    if path in _DETECTORS:
        return _DETECTORS[path]
    detector = None
    if path.is_file():
        try:
            with safe_open(str(path), "np") as f:
                config = json.loads(f.metadata()["config"])
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            detector = CNNClassifier._from_state(tensors, config)
        except Exception:
            detector = None  # a damaged cache file is rebuilt below
    if detector is None:
        data = load_mnist("mnist")
        n = FIT_DIGITS  # the rest of the training digits calibrate it (see _calibration)
        images, y = training_set(np.asarray(data.images[:n]), np.asarray(data.target[:n]))
        detector = fit_detector(images, y)
        tensors, config = detector._export_state()
        atomic_write_bytes(path, save(tensors, metadata={"config": json.dumps(config)}))
    _DETECTORS[path] = detector
    return detector
