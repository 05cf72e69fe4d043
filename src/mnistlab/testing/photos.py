"""Photo-like test images made from MNIST digits, for tests and benchmarks.

``make_photo`` turns a 28x28 MNIST digit into what a user would send: dark ink
on textured, unevenly lit paper, off-centre, rotated a little and JPEG-compressed,
or a canvas export (black on white, white on black, or strokes on a transparent
background); ``place_on_table`` shows such a sheet on a dark table. ``make_number_photo`` does the same for a row of digits, and
``make_non_digit`` makes the inputs a digit reader must refuse: empty pages,
noise, scribbles, letters and photos of other things. Every function returns
encoded file bytes, so the whole reading path (decoding included) is exercised.

These images are made from MNIST's own digits: they test the reading path, not
how well a model reads other hands (for that, see ``benchmarks/``).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from mnistlab.errors import ParameterError
from mnistlab.testing._checks import check_rng

__all__ = [
    "STYLES",
    "NON_DIGIT_KINDS",
    "make_photo",
    "make_number_photo",
    "place_on_table",
    "make_non_digit",
    "make_pixel_bomb",
    "make_dashes_strip",
]

STYLES = ("paper", "canvas-black-on-white", "canvas-white-on-black", "canvas-transparent")
NON_DIGIT_KINDS = ("blank", "noise", "scribble", "letter", "shapes", "texture")
# Letters and symbols that no careful reader would take for a digit (O, I, l, S,
# Z, B, g, q and the like are left out: they *are* ambiguous).
LETTERS = "ACEFHKMNPRTUVWXY#@%&?*"


def _pick_style(rng: np.random.Generator, style: str | None) -> str:
    if style is None:
        return str(rng.choice(STYLES, p=[0.55, 0.15, 0.15, 0.15]))
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}, expected one of {STYLES}")
    return style


def _checked_digits(digits) -> list[np.ndarray]:
    """The digits as arrays, or a clear error for none, one of the wrong size, or one with no ink on 0-255."""
    arrays = [np.asarray(d) for d in digits]
    if not arrays:
        raise ParameterError("digits", "{param} is empty; give at least one 28x28 digit.")
    for d in arrays:
        if d.size != 28 * 28 or d.dtype.kind not in "buif":
            raise ParameterError("digit", f"{{param}} must be a 28x28 MNIST digit, not {d.dtype} of shape {d.shape}.")
        if not d.max() > 0.05 * 255:  # the least ink _digit_ink keeps
            scale = " (0-1 images: multiply by 255)" if d.dtype.kind in "bf" and d.max() > 0 else ""
            raise ParameterError("digit", f"{{param}} has no ink: pixels must be 0-255 as in MNIST{scale}.")
    return arrays


def _digit_ink(digit: np.ndarray, rng: np.random.Generator, height: int, rotate: float) -> np.ndarray:
    """One 28x28 digit as ink coverage (h, w) in [0, 1], about ``height`` px tall."""
    d = np.asarray(digit, np.float32).reshape(28, 28) / 255.0
    d = ndimage.rotate(d, rng.uniform(-rotate, rotate), reshape=True, order=1)
    rows, cols = np.flatnonzero(d.max(1) > 0.05), np.flatnonzero(d.max(0) > 0.05)
    d = d[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = height * rng.uniform(0.85, 1.1) / d.shape[0]
    size = (max(2, round(d.shape[1] * scale)), max(2, round(d.shape[0] * scale)))
    big = np.asarray(Image.fromarray(d, mode="F").resize(size, Image.Resampling.BICUBIC))
    big = np.clip(big, 0, 1)
    # Pens differ: thin or thicken the stroke a little (grey erosion / dilation).
    r = int(rng.integers(-1, 3)) * max(1, height // 60)
    if r > 0:
        big = ndimage.grey_dilation(big, size=(r + 1, r + 1))
    elif r < 0:
        big = ndimage.grey_erosion(big, size=(-r + 1, -r + 1))
    return np.clip((big - 0.15) * 1.4, 0, 1)  # crisper edges, as a pen stroke


def _row_ink(digits, rng: np.random.Generator, height: int, rotate: float) -> np.ndarray:
    parts = [_digit_ink(d, rng, height, rotate) for d in digits]
    gaps = [int(rng.uniform(0.15, 0.45) * height) for _ in parts[1:]]
    top_pad = int(0.1 * height)
    h = max(p.shape[0] for p in parts) + 2 * top_pad
    w = sum(p.shape[1] for p in parts) + sum(gaps)
    out = np.zeros((h, w), np.float32)
    x = 0
    for i, p in enumerate(parts):
        y = int(np.clip((h - p.shape[0]) // 2 + rng.integers(-top_pad, top_pad + 1), 0, h - p.shape[0]))
        out[y : y + p.shape[0], x : x + p.shape[1]] = np.maximum(out[y : y + p.shape[0], x : x + p.shape[1]], p)
        x += p.shape[1] + (gaps[i] if i < len(gaps) else 0)
    return out


def _place(ink: np.ndarray, rng: np.random.Generator, margin: tuple[float, float]) -> np.ndarray:
    """Put ``ink`` on a larger canvas at a random, usually off-centre position."""
    h, w = ink.shape
    H = int(h * rng.uniform(*margin))
    W = max(int(w + (H - h) * rng.uniform(0.6, 1.4)), w + 4)
    out = np.zeros((H, W), np.float32)
    y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    out[y : y + h, x : x + w] = ink
    return out


def _encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    mode = "RGBA" if rgb.shape[-1] == 4 else "RGB"
    Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode).save(buf, fmt, **kw)
    return buf.getvalue()


def _paper(shape, rng: np.random.Generator) -> np.ndarray:
    """Paper RGB (H, W, 3): warm off-white, fibre texture, blotches, uneven light."""
    H, W = shape
    base = np.array([rng.uniform(0.82, 0.97), rng.uniform(0.8, 0.95), rng.uniform(0.72, 0.92)])
    fibre = ndimage.gaussian_filter(rng.standard_normal((H, W)), rng.uniform(0.7, 2.0))
    fibre *= rng.uniform(0.02, 0.05) / (fibre.std() + 1e-9)
    blotch = ndimage.gaussian_filter(rng.standard_normal((H // 8 + 1, W // 8 + 1)), 3)
    blotch = ndimage.zoom(blotch / (blotch.std() + 1e-9), (H / blotch.shape[0], W / blotch.shape[1]), order=1)[:H, :W]
    texture = 1 + fibre + 0.02 * blotch
    y, x = np.mgrid[0:H, 0:W]
    y, x = y / H - 0.5, x / W - 0.5
    light = 1 + rng.uniform(-0.5, 0.5) * x + rng.uniform(-0.5, 0.5) * y
    cy, cx = rng.uniform(-0.5, 0.5, 2)
    light -= rng.uniform(0.0, 0.8) * ((x - cx) ** 2 + (y - cy) ** 2)
    light = light - light.min()
    light = 0.35 + 0.65 * light / max(light.max(), 1e-6)  # 0.35 in the darkest corner
    light = light * rng.uniform(0.75, 1.0)
    return base * (texture * light)[..., None]


def _paper_photo(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    ink = _place(ink, rng, (1.5, 3.0))
    paper = _paper(ink.shape, rng)
    colour = [np.array([0.08, 0.08, 0.1]), np.array([0.12, 0.15, 0.45]), np.array([0.3, 0.3, 0.32])][rng.integers(3)]
    lightness = paper.mean(-1, keepdims=True)
    a = (ink * rng.uniform(0.75, 1.0))[..., None]
    img = paper * (1 - a) + colour * lightness * a
    return camera(img, rng, blur=1.2)


def camera(img: np.ndarray, rng: np.random.Generator, *, blur: float) -> bytes:
    """What a phone camera adds to a sheet (H, W, 3) in [0, 1]: blur up to ``blur`` px, dust, noise, JPEG."""
    img = ndimage.gaussian_filter(img, (rng.uniform(0.3, blur),) * 2 + (0,))
    for _ in range(int(rng.integers(0, 4))):  # dust specks
        y, x = rng.integers(0, img.shape[0]), rng.integers(0, img.shape[1])
        img[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] *= 0.5
    img += rng.normal(0, rng.uniform(0.005, 0.02), img.shape)
    return _encode(img, "JPEG", quality=int(rng.integers(55, 93)))


def _canvas(ink: np.ndarray, rng: np.random.Generator, style: str) -> bytes:
    ink = _place(np.clip(ink * 1.3, 0, 1), rng, (1.2, 1.6))[..., None]
    if style == "canvas-black-on-white":
        return _encode(np.repeat(1 - ink, 3, -1), "PNG")
    if style == "canvas-white-on-black":
        return _encode(np.repeat(ink, 3, -1), "PNG")
    level = 0.0 if rng.random() < 0.5 else 1.0  # stroke colour on a transparent layer
    rgb = np.full(ink.shape[:2] + (3,), level)
    return _encode(np.concatenate([rgb, ink], -1), "PNG")


def _render(ink: np.ndarray, rng: np.random.Generator, style: str | None) -> bytes:
    style = _pick_style(rng, style)
    return _paper_photo(ink, rng) if style == "paper" else _canvas(ink, rng, style)


def make_photo(digit, rng: np.random.Generator, *, style: str | None = None, rotate: float = 10.0) -> bytes:
    """Encoded image (JPEG for paper, PNG for canvases) of one 28x28 uint8 MNIST digit (0-255, ink bright).

    ``style``: one of ``STYLES`` (default: drawn from ``rng``, paper 55% of the time); ``rotate``: the most
    degrees the digit is turned either way.
    """
    (digit,) = _checked_digits([digit])
    height = int(check_rng(rng).integers(60, 260))
    return _render(_row_ink([digit], rng, height, rotate), rng, style)


def make_number_photo(digits, rng: np.random.Generator, *, style: str | None = None, rotate: float = 6.0) -> bytes:
    """Encoded image of a row of 28x28 uint8 MNIST digits, left to right, with gaps; ``style`` and ``rotate``
    (per digit) as for ``make_photo``."""
    digits = _checked_digits(digits)
    height = int(check_rng(rng).integers(60, 140))
    return _render(_row_ink(digits, rng, height, rotate), rng, style)


def place_on_table(photo: bytes, rng: np.random.Generator) -> bytes:
    """The same sheet photographed from further away: on a dark table, slightly turned (JPEG)."""
    check_rng(rng)
    try:
        sheet = Image.open(io.BytesIO(photo)).convert("RGB")
    except (OSError, TypeError):  # PIL's UnidentifiedImageError is an OSError
        raise ParameterError(
            "photo", "{param} must be the bytes of an image file, such as make_photo returns."
        ) from None
    w, h = sheet.size
    margin = int(rng.uniform(0.08, 0.2) * max(w, h))
    table_colour = tuple(int(c) for c in rng.integers(20, 90, 3))
    table = Image.new("RGB", (w + 2 * margin, h + 2 * margin), table_colour)
    turned = sheet.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=table_colour)
    table.paste(
        turned,
        (
            margin + int(rng.integers(-margin // 2, margin // 2 + 1)) - (turned.size[0] - w) // 2,
            margin - (turned.size[1] - h) // 2,
        ),
    )
    buf = io.BytesIO()
    table.save(buf, "JPEG", quality=int(rng.integers(70, 93)))
    return buf.getvalue()


# --- inputs that are not digits -------------------------------------------------------


def _scribble(rng: np.random.Generator, size: int) -> np.ndarray:
    im = Image.new("F", (size, size), 0.0)
    draw = ImageDraw.Draw(im)
    pos, vel = rng.uniform(0.3, 0.7, 2) * size, rng.normal(0, 1, 2)
    points = []
    for _ in range(int(rng.integers(60, 160))):  # a random walk with momentum
        vel = 0.9 * vel + rng.normal(0, 0.6, 2)
        pos = np.clip(pos + vel * size / 60, 0.05 * size, 0.95 * size)
        points.append(tuple(pos))
    draw.line(points, fill=1.0, width=max(2, size // 25), joint="curve")
    return np.asarray(im)


def _letter(rng: np.random.Generator, size: int) -> np.ndarray:
    char = LETTERS[int(rng.integers(len(LETTERS)))]
    font = ImageFont.load_default(size=int(size * 0.7))
    im = Image.new("F", (size, size), 0.0)
    ImageDraw.Draw(im).text((size * 0.15, size * 0.1), char, fill=1.0, font=font)
    return ndimage.rotate(np.asarray(im), rng.uniform(-10, 10), reshape=False, order=1)


def _shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Solid objects: filled ellipses and boxes no more than twice as long as wide
    (a lone filled bar would be a fair "1", so it is not made)."""
    im = Image.new("F", (size, size), 0.0)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = rng.uniform(0, 0.6, 2) * size
        w = rng.uniform(0.2, 0.45) * size
        h = w * rng.uniform(0.5, 2.0)
        x1, y1 = x0 + w, y0 + h
        shade = float(rng.uniform(0.4, 1.0))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=shade)
    return np.asarray(im)


def make_non_digit(kind: str, rng: np.random.Generator) -> bytes:
    """Encoded image of something that is not a digit: one of ``NON_DIGIT_KINDS``."""
    size = int(check_rng(rng).integers(100, 260))
    if kind == "blank":
        return _render(np.zeros((size, size), np.float32), rng, None)
    if kind == "noise":
        if rng.random() < 0.5:  # random pixels, the whole frame
            return _encode(rng.random((size, size, 3)), "PNG")
        field = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(1, 4))
        return _render((field > np.quantile(field, rng.uniform(0.7, 0.95))).astype(np.float32), rng, None)
    if kind == "scribble":
        return _render(_scribble(rng, size), rng, None)
    if kind == "letter":
        return _render(_letter(rng, size), rng, None)
    if kind == "shapes":
        return _render(_shapes(rng, size), rng, None)
    if kind == "texture":  # a photo of fabric, wood or a wall: multi-scale colour noise
        img = sum(
            ndimage.zoom(rng.random((size // s + 2, size // s + 2, 3)), (s, s, 1), order=1)[:size, :size] / (i + 1)
            for i, s in enumerate((32, 8, 2))
        )
        return _encode(img / img.max(), "JPEG", quality=85)
    raise ValueError(f"unknown kind {kind!r}, expected one of {NON_DIGIT_KINDS}")


def make_pixel_bomb(width: int, height: int) -> bytes:
    """A valid PNG whose header declares ``width`` x ``height`` pixels, with almost no data behind it.

    A decoder that trusts the header allocates width x height bytes; a careful
    one refuses it from the header alone.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if not all(isinstance(n, (int, np.integer)) and 0 <= n < 2**32 for n in (width, height)):
        raise ParameterError(
            "width", f"width and height must be whole numbers 0 to 2**32 - 1, not {width!r}, {height!r}."
        )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def make_dashes_strip(seed: int = 0) -> bytes:
    """A 1280x64 PNG of three lines of short dashes running to its edges (so read as a photo, not a drawing):
    some 600 separate marks, none a digit, in under 1 KB. ``read_number`` refuses it before reading any mark."""
    rng = np.random.default_rng(seed)
    strip = np.full((64, 1280), 255, np.uint8)
    for y in (10, 30, 50):
        x = int(rng.integers(0, 30))
        while x < 1280:
            length = int(rng.integers(2, 30))
            strip[y, x : x + length] = 0
            x += length + int(rng.integers(5, 26))
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    return buffer.getvalue()
