"""Decode any image a user sends (path, bytes, file, PIL image, array) into float32 grey.

The pixel count and shape are checked from the header before decoding, so
decompression bombs and pixel strips are refused cheaply; transparency is composited onto the colour that
reads as background; big images are reduced to ``WORK_SIDE``.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from PIL.TiffImagePlugin import TiffImageFile

from mnistlab.data.home import expand_home
from mnistlab.errors import ImageError, ImageTooLargeError, InputError, NotAnImageError
from mnistlab.reading.admission import (
    FORMAT_NAMES,
    IMAGE_FORMATS,
    JPEG_FORMATS,
    MAX_BLOCKS,
    MAX_IMAGE_FILE_BYTES,
    PNG_SIGNATURE,
    bounded_file,
    check_callers_image,
    check_decodable,
    check_jpeg_scans,
    check_parts,
    file_too_large,
    format_by_signature,
    held_bytes,
    undecodable,
    unidentified,
    unreadable,
)
from mnistlab.reading.arrays import array_to_grey, composite, fitted_size, reduce_array, unit_scale
from mnistlab.reading.opened import undecoded_jpeg

__all__ = [
    "WORK_SIDE",
    "start_of",
    "rewound",
    "load_image",
    "to_grey",
    "reduced_side",
    "encode_png",
    "regular_file_size",
    "user_path",
    "unreadable",
]

# Images are reduced to this longer side first: plenty for one digit or a short
# number, and it keeps every later step in the milliseconds.
WORK_SIDE = 320
_UNIT = np.float32(1 / 255)  # uint8 * _UNIT: float32 in [0, 1] in one pass, and 255 * _UNIT is exactly 1


def load_image(source, *, max_side: int = WORK_SIDE) -> Image.Image:
    """Open and decode an image from a path, bytes, a file object or a PIL image.

    The pixel count is checked right after the header is read, before decoding,
    so decompression bombs are refused cheaply. EXIF orientation is applied. A file of
    several pictures (TIFF pages, GIF, PNG or WebP frames, an MPO) is read from its first.
    A JPEG is decoded reduced (1/2, 1/4 or 1/8) where it stays at least
    ``max_side`` px. Any failure raises ``ImageError`` with one sentence saying
    what was wrong.
    """
    if isinstance(source, Image.Image):
        return _callers_image(source, max_side)
    fp: IO[bytes] | Path
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise NotAnImageError(f"The image data is empty (0 bytes); send a {FORMAT_NAMES} file.")
        fp, label = held_bytes(source), "the image data"
    elif isinstance(source, (str, os.PathLike)):
        path = user_path(source)
        size = regular_file_size(path)
        if size == 0:
            raise NotAnImageError(f"{path} is empty (0 bytes); send a {FORMAT_NAMES} file.")
        if size > MAX_IMAGE_FILE_BYTES:
            raise file_too_large(str(path), size)
        fp, label = path, str(path)
    elif hasattr(source, "read"):
        fp, label = source, "the uploaded file"
    else:
        raise ImageError(
            f"Cannot read an image from a {type(source).__name__}; "
            "expected a path, bytes, a PIL image or a numpy array."
        )
    try:
        with warnings.catch_warnings():
            # What Pillow warns of (a damaged tag it skips, a bomb by its laxer limit) is harmless or ends in an error
            # below, one sentence: its warning put its source file and line around the answer, or raised under -W error.
            warnings.simplefilter("ignore")
            if fp is source:  # the caller's file object (a BytesIO too: it may hold gigabytes), not bytes or a path
                fp = bounded_file(fp, label)
            check_parts(fp, label)  # before Pillow reads every chunk, strip or tile as it opens the file
            opened = Image.open(fp, formats=IMAGE_FORMATS)
            check_decodable(opened.size, opened.format, label)
            _not_mapped(opened)
            if opened.format in JPEG_FORMATS:
                check_jpeg_scans(opened.fp, opened.size, label)  # Pillow's own file: not opened twice
            # JPEG can decode at 1/2, 1/4 or 1/8 scale: big photos cost little.
            # Grey straight from the decoder where it can (JPEG's Y channel is the luma).
            opened.draft("L" if opened.mode in ("L", "RGB", "YCbCr") else opened.mode, (max_side, max_side))
            _decode(opened, label)
            _turn_upright(opened, label)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(  # refused from its header, as check_decodable refuses one
            f"{label} declares far too many pixels to decode safely (more than Pillow opens); send a smaller image."
        ) from None
    except UnidentifiedImageError:
        raise _unidentified(label, fp) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise undecodable(label, exc) from None
    return opened


def _callers_image(source: Image.Image, max_side: int) -> Image.Image:
    """A PIL image the caller made or opened, decoded and turned upright; a JPEG not decoded yet is read from its
    file, as ``load_image`` reads the file: reduced by the decoder."""
    check_callers_image(source)
    if (jpeg := undecoded_jpeg(source)) is not None:
        return load_image(jpeg, max_side=max_side)
    _not_mapped(source)
    try:  # opened from a file, its pixels may not be decoded yet
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as for a file, in load_image
            return ImageOps.exif_transpose(source)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise undecodable("the image", exc) from None


def _unidentified(label: str, fp) -> ImageError:
    """The error for a file Pillow did not take for an image. Bytes of no format read are no image at all
    (``NotAnImageError``, 415 on the web, as the upload check says); a format read that cannot be decoded is an
    image mnistlab cannot read (``ImageError``); a .npy or .csv file is what ``mnistlab predict`` reads as an
    array, and ``predict_array`` in Python."""
    if isinstance(fp, Path) and fp.suffix.lower() in (".npy", ".csv"):
        return NotAnImageError(
            f"{label} holds pixel values, not an image; read it with predict_array, which takes a digit as 784 "
            "values (mnistlab predict reads both)."
        )
    return (ImageError if format_by_signature(fp) is not None else NotAnImageError)(unidentified(label, fp))


def start_of(source) -> tuple[Any, int | None]:
    """``source`` as it can be read again, and where a file object's image starts (None for a path, bytes or an
    image). A stream that cannot seek (a pipe, a socket, an HTTP response) is read into memory first, held to the
    bound a file is (``bounded_file``): read once, a doubted photo got no second look and answered otherwise than
    its own bytes, its file or ``mnistlab predict -`` do."""
    if not hasattr(source, "read"):
        return source, None
    try:
        if callable(getattr(source, "seekable", None)) and source.seekable():
            return source, int(source.tell())
    except (OSError, ValueError, AttributeError):  # closed (said as such when it is read), or cannot tell
        return source, None
    return bounded_file(source), 0  # its errors (too large, text) are the caller's


def rewound(source, start: int | None) -> bool:
    """Whether ``source`` can be read again: a file object is sought back to ``start``, if it can be."""
    if not hasattr(source, "read"):
        return True
    try:
        source.seek(start)
    except (OSError, ValueError, AttributeError, TypeError):  # unseekable, or no start to go back to
        return False
    return True


def _not_mapped(image: Image.Image) -> None:
    """A TIFF that its orientation (5 to 8) turns a quarter is read through its file, not memory-mapped: Pillow maps
    an uncompressed one (grey, palette, RGBA, CMYK, 16-bit) opened from its path at its upright size, not its stored
    one, so such a scan read as stripes, where its bytes (an upload) read right."""
    if isinstance(image, TiffImageFile) and image.tag_v2.get(ExifTags.Base.Orientation) in (5, 6, 7, 8):
        image.filename = ""  # Pillow maps only a file it has the name of


def _decode(image: Image.Image, label: str) -> None:
    """``image``'s pixels decoded. Pillow reads a TIFF's EXIF and XMP as it ends (to turn it upright), and a tag
    of another type than its own there (an XMP tag of numbers, not text) raises TypeError and the like: refused as
    metadata that cannot be read, not a 500. What a broken file raises otherwise (OSError...) is the caller's."""
    try:
        image.load()
    except (TypeError, AttributeError, KeyError, IndexError, struct.error):
        raise ImageError(
            f"The metadata of {label} (its tags, EXIF or XMP) cannot be read; save the image again without its "
            "metadata."
        ) from None


def _turn_upright(image: Image.Image, label: str) -> None:
    """``image`` (ours to change: no copy of the pixels) turned as its EXIF orientation says; EXIF that cannot be
    read (a PNG's eXIf chunk that is not EXIF, or cut short), or that Pillow cannot write back once it has taken
    the orientation out (a tag of another type than the tag's own), is refused as such, not as a truncated image
    or with a 500. The pixels are decoded already: what fails here is the metadata."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except (SyntaxError, ValueError, TypeError, AttributeError, KeyError, IndexError, struct.error):
        raise ImageError(
            f"The EXIF metadata of {label} (which says which way up it is) cannot be read; "
            "save the image again without its metadata."
        ) from None


# What ``Path.is_file`` takes as "no such file": anything else the system says about a path is said as it is.
_NO_FILE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF)


def user_path(source: str | os.PathLike) -> Path:
    """``source`` as a path, a leading ``~`` taken for the user's home as a shell takes it (a path a caller
    copied from a terminal; Python's ``open`` would look for a folder named ``~``). An empty str (an unset
    variable) is refused: ``Path("")`` is the current folder."""
    if isinstance(source, str) and not source:
        raise ImageError("The path is empty, which would mean the current folder; give the file's path.")
    path = Path(source)
    home = path.parts[:1] == ("~",)
    return expand_home(path, lambda why: ImageError(f"{path} {why}; give its full path.")) if home else path


def regular_file_size(path: Path, error: type[InputError] = ImageError) -> int:
    """The size of the regular file at ``path``; ``error`` with one sentence for a path that names none, or one
    the system will not look at (a folder it may not search, a name too long, a NUL character in it)."""
    try:
        info = path.stat()
    except ValueError:  # a NUL character: no system call can name such a path
        raise error(f"{str(path)!r} holds a NUL character, which no file name can; check the path.") from None
    except OSError as exc:
        if exc.errno not in _NO_FILE:
            raise error(unreadable(str(path), exc)) from None
        info = None
    if info is None:
        raise error(f"{path} does not exist or is not a file; check the path.")
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a folder, not a file; give a file in it (mnistlab predict reads a whole folder).")
    if not stat.S_ISREG(info.st_mode):  # a shell's <(curl ...) is a pipe: read once, a doubted photo is read again
        raise error(
            f"{path} is a pipe or a device, not a file; pipe it to mnistlab predict - instead, or save it to a file."
        )
    return info.st_size


def _pil_to_grey(im: Image.Image, max_side: int) -> np.ndarray:
    """A decoded PIL image -> float32 grey (H, W) in [0, 1], longer side at most ``max_side``.

    8-bit grey, colour and RGBA images (nearly every photo and canvas) take a
    fast path in Pillow's C code: one luma conversion (ITU-R 601-2, as
    ``arrays.luma``) and, without transparency, an area-averaging reduction on uint8
    before the one float32 copy.
    """
    transparent = "transparency" in im.info
    if im.mode in ("L", "RGB") and not transparent:
        return np.asarray(_reduced(im if im.mode == "L" else im.convert("L"), max_side)) * _UNIT
    if im.mode in ("P", "LA", "PA", "La", "RGBa") or (im.mode in ("L", "RGB") and transparent):
        im = (im.convert("LA") if im.mode == "La" else im).convert("RGBA")  # Pillow makes RGBA of La only via LA
    if im.mode == "RGBA":
        grey = np.asarray(im.convert("L")) * _UNIT
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            return _clipped(reduce_array(composite(grey, alpha * _UNIT), max_side))
        # Opaque (a browser's canvas export): nothing to composite, and uint8 * _UNIT lies in [0, 1].
        return grey if max(im.size) <= max_side else _clipped(reduce_array(grey, max_side))
    if im.mode == "1":
        return np.asarray(_reduced(im.convert("L"), max_side)) * _UNIT
    if im.mode.startswith("I") or im.mode == "F":
        a = np.clip(unit_scale(np.asarray(im), "The image"), 0.0, 1.0)
        return np.clip(reduce_array(a.astype(np.float32), max_side), 0.0, 1.0)
    # CMYK, YCbCr, LAB, HSV
    return np.asarray(_reduced(im.convert("RGB").convert("L"), max_side)) * _UNIT


def _clipped(grey: np.ndarray) -> np.ndarray:
    """``np.clip(grey, 0, 1)``, in place where ``grey`` is writeable (ours: no other reference to it)."""
    return np.clip(grey, 0.0, 1.0, out=grey if grey.flags.writeable else None)


def _reduced(im: Image.Image, max_side: int) -> Image.Image:
    """An 8-bit image area-averaged down to ``max_side`` (unchanged when it already fits)."""
    if max(im.size) <= max_side:
        return im
    return im.resize(fitted_size(*im.size, max_side), Image.Resampling.BOX)


# A strip is reduced to at most this many times the work size: one 20 times as long as it is high (the
# longest ``check_strip`` lets through) keeps 64 px of its height at 4 x 320 px.
_STRIP_SCALE = 4


def reduced_side(width: int, height: int, max_side: int = WORK_SIDE, min_short_side: int = 0) -> int:
    """The longer side (px) that ``to_grey`` reduces an image of ``width`` x ``height`` to: ``max_side``, or
    more for a strip whose shorter side would fall under ``min_short_side`` (at most ``_STRIP_SCALE`` times
    ``max_side``), never more than the image's own."""
    long, short = max(width, height), max(1, min(width, height))
    side = max(max_side, min(_STRIP_SCALE * max_side, -(-min_short_side * long // short)))
    return min(long, side)


def to_grey(image, *, max_side: int = WORK_SIDE, min_short_side: int = 0) -> np.ndarray:
    """Any image (path, bytes, PIL image, array) -> float32 grey (H, W) in [0, 1].

    Transparency is composited (see ``composite``); images are reduced (area
    average) so that the longer side is at most ``max_side``, or, for a strip
    (``reduced_side``), so that the shorter side keeps ``min_short_side`` px
    (at most ``max_side`` itself: JPEG's reduced decoding keeps that much).
    """
    if isinstance(image, np.ndarray):
        return array_to_grey(image, lambda width, height: reduced_side(width, height, max_side, min_short_side))
    plain = _plain_png(image) if isinstance(image, bytes) else None
    if isinstance(plain, np.ndarray):  # a plain grey PNG: Pillow's own numbers with none of its calls
        if max(plain.shape) <= reduced_side(plain.shape[1], plain.shape[0], max_side, min_short_side):
            return plain * _UNIT
        plain = Image.fromarray(plain)
    im = load_image(image, max_side=max_side) if plain is None else plain
    return _pil_to_grey(im, reduced_side(*im.size, max_side, min_short_side))  # in [0, 1]


# Chunks a plain PNG may hold besides IHDR, IDAT and IEND, with their lengths: they change no pixel.
_PLAIN_CHUNKS = {b"sRGB": 1, b"gAMA": 4, b"cHRM": 32, b"pHYs": 9}
_PLAIN_MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # PNG colour type -> the mode Pillow opens it in


def _plain_png(data: bytes) -> Image.Image | np.ndarray | None:
    """A plain PNG decoded by OpenCV, as the very image Pillow makes of it, a grey one as its (H, W) uint8
    array (None: any other file).

    Plain: 8-bit grey, RGB or RGBA, not interlaced, no chunk that could change
    what Pillow reads (transparency, palette, EXIF, text), every chunk's CRC
    right and IEND last. OpenCV's PNG decoder is faster than Pillow's (a third
    on a 280 px RGBA canvas export); anything else, or anything OpenCV cannot
    decode, goes through ``load_image`` as before, errors and all.
    """
    if data[:16] != PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" or not 57 <= len(data) <= MAX_IMAGE_FILE_BYTES:
        return None
    w, h, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if not (w and h and depth == 8 and colour in _PLAIN_MODES and compression == filtering == interlace == 0):
        return None
    view, pos, seen_data = memoryview(data), 8, False
    for _ in range(MAX_BLOCKS):  # more chunks: load_image refuses the file
        if pos + 12 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data) or zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            return None
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            seen_data = True
        elif seen_data or (pos > 8 and _PLAIN_CHUNKS.get(kind) != length):  # nothing but IDAT among them
            return None
        pos = end
    else:
        return None
    if not seen_data or length or end != len(data):  # IEND, empty and last
        return None
    check_decodable((w, h), "PNG", "the image data")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    channels = len(_PLAIN_MODES[colour])
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != ((h, w) if channels == 1 else (h, w, channels)):
        return None
    if channels == 1:
        return pixels
    return Image.frombuffer(_PLAIN_MODES[colour], (w, h), pixels, "raw", "BGR" if channels == 3 else "BGRA", 0, 1)


def encode_png(image: np.ndarray) -> bytes:
    """A grey uint8 image (H, W) as PNG file bytes (what the model saw, for people to look at).

    Written here rather than by Pillow: for a 28x28 answer image Pillow's
    encoder set-up costs several times the compression (every API answer
    carries one). One IDAT chunk, each row with filter 0 (none).
    """
    a = np.ascontiguousarray(image, dtype=np.uint8)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"encode_png takes a non-empty (H, W) uint8 image, got shape {a.shape}")
    h, w = a.shape
    rows = np.zeros((h, w + 1), np.uint8)  # each row: its filter type byte (0), then its pixels
    rows[:, 1:] = a
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale, deflate, no interlace
    pixels = zlib.compress(rows.tobytes(), 1)  # level 1: half the time of the default 6 (14 us), 5% larger (214 B)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
