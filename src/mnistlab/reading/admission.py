"""What an image may cost before it is decoded: its pixels, its shape, its format and a JPEG's scans.

Every check reads the header or counts bytes, so a bomb (a PNG that declares
100000 x 100000 pixels, a 1 x 49,990,000 strip, a progressive JPEG that repeats
one scan hundreds of times, an EPS file for Ghostscript) is refused before a
pixel is decoded. ``decode.load_image`` applies them to every file, the web
server to every upload's header.
"""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

from PIL import Image, ImageFile

from mnistlab.errors import ImageError, ImageTooLargeError

__all__ = [
    "MAX_PIXELS",
    "MAX_FULL_DECODE_PIXELS",
    "MAX_ASPECT",
    "IMAGE_FORMATS",
    "FORMAT_NAMES",
    "JPEG_FORMATS",
    "MAX_JPEG_SCANS",
    "MAX_JPEG_SCAN_PIXELS",
    "MAX_IMAGE_FILE_BYTES",
    "check_pixels",
    "check_strip",
    "check_decodable",
    "check_jpeg_scans",
    "file_too_large",
    "bounded_file",
    "held_bytes",
    "check_callers_image",
    "MAX_TIFF_PARTS",
    "MAX_BLOCKS",
    "PNG_SIGNATURE",
    "check_parts",
    "format_by_signature",
    "undecodable",
    "unidentified",
    "unreadable",
]

# Refuse images above this many pixels before decoding them (a 50 MP phone photo
# still passes; a PNG header claiming 100000 x 100000 does not).
MAX_PIXELS = 50_000_000
# JPEG decodes at 1/8 of its size when asked; other formats only whole. Those are
# refused past this many pixels (a 16 MP PNG is 16-64 MB decoded, a second of CPU).
MAX_FULL_DECODE_PIXELS = 16_000_000
# No photo, scan or canvas of digits is longer than this many times its width:
# a 1 x 49,990,000 "image" is a strip built to cost seconds and gigabytes.
MAX_ASPECT = 20
# The formats read. Pillow opens many more (EPS and PDF through Ghostscript among them), none of them a
# photo or drawing of digits: those are refused before their plugin runs.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
FORMAT_NAMES = "PNG, JPEG, BMP, TIFF, WebP or GIF"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What Pillow names a JPEG: MPO is one holding more pictures (a stereo pair, a phone's HDR gain map), read as one.
JPEG_FORMATS = ("JPEG", "MPO")
# A progressive JPEG is decoded scan by scan over the whole image, whatever the draft size (Pillow writes
# a grey one in 6 scans); a file that repeats a scan costs a pass over every pixel each time: the scans
# are counted from the bytes, and a file past either bound is refused before decoding.
MAX_JPEG_SCANS = 100
MAX_JPEG_SCAN_PIXELS = 1_000_000_000  # pixels x scans: a 50 MP photo in 20 scans
# An image file larger than this is refused by its size before it is opened: the largest image read (16 MP of
# 16-bit RGBA, uncompressed, 128 MiB; a 50 MP JPEG is tens of MB) fits twice, and counting a JPEG's scans
# reads the whole file (a 4 GiB file with a JPEG's header took 13 s).
MAX_IMAGE_FILE_BYTES = 256 * 2**20
# A TIFF's first image cut into more strips or tiles than this is refused from its header: Pillow lists every one
# as it opens the file (an 8 MB TIFF of 1000 x 1000 1-pixel tiles: 1.9 s and 300 MB) and sets a decoder up for each
# (9.5 s more). The TIFF spec's smallest tiles (16 x 16) cut a 16 MP image into 62,500; one row a strip, 17,888.
MAX_TIFF_PARTS = 65_536
# A PNG of more chunks than this is refused before Pillow reads it, chunk by chunk in Python (a 12 MB PNG of 100 x
# 100 pixels and a million empty chunks: 12 s). An encoder writes its pixels in chunks of 8 KiB or more: a 128 MiB
# image in some 16,000; one chunk a row, 17,888 at most. So are a JPEG of more segments (or stray bytes) before its
# first scan (4 MB of a million empty comments: 6.4 s) and a GIF of more extension blocks before its first image
# (8 MB of 4 million: 3.3 s and 346 MB): a photo's header holds tens.
MAX_BLOCKS = 65_536


def check_pixels(size: tuple[int, int], label: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{label} has zero size ({w}x{h} pixels); send an image with content.")
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{label} declares {w}x{h} pixels, more than the {MAX_PIXELS:,} allowed; "
            "send a smaller image (a digit needs far fewer pixels)."
        )


def check_strip(size: tuple[int, int], label: str) -> None:
    w, h = size
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageTooLargeError(
            f"{label} is a strip of {w}x{h} pixels, more than {MAX_ASPECT} times as long as it is wide; "
            "crop it to the digits, or cut a long number into parts of at most 15 digits and read each."
        )


def check_decodable(size: tuple[int, int], image_format: str | None, label: str = "the image") -> None:
    """Refuse, from the header alone, an image whose decoding would cost more than a digit is worth.

    Any image: at most ``MAX_PIXELS`` pixels, at most ``MAX_ASPECT`` times as
    long as wide. Formats that cannot be decoded reduced (all but JPEG): at most
    ``MAX_FULL_DECODE_PIXELS``. Raises ``ImageTooLargeError`` (413 on the web).
    """
    check_pixels(size, label)
    check_strip(size, label)
    w, h = size
    if image_format not in JPEG_FORMATS and w * h > MAX_FULL_DECODE_PIXELS:
        raise ImageTooLargeError(
            f"{label} is a {image_format or 'non-JPEG'} image of {w}x{h} pixels, which decodes only at full size; "
            f"send it scaled down to at most {MAX_FULL_DECODE_PIXELS:,} pixels, or as a JPEG."
        )


def check_jpeg_scans(source, size: tuple[int, int], label: str = "the image") -> None:
    """Refuse a JPEG (its bytes or a seekable file) whose scans would cost more to decode than any
    photo's (``MAX_JPEG_SCANS``, ``MAX_JPEG_SCAN_PIXELS``). Counted as start-of-scan markers: entropy-coded
    data stuffs every 0xFF with a 0x00, so 0xFFDA appears only as a marker (or in metadata, which can only
    add a few)."""
    scans = source.count(b"\xff\xda") if isinstance(source, (bytes, bytearray)) else _count_scans(source)
    w, h = size
    if scans > MAX_JPEG_SCANS or scans * w * h > MAX_JPEG_SCAN_PIXELS:
        raise ImageTooLargeError(
            f"{label} is a JPEG of {scans} scans over {w}x{h} pixels, more decoding than a photo needs (at most "
            f"{MAX_JPEG_SCANS} scans and {MAX_JPEG_SCAN_PIXELS:,} pixels times scans); save it again as an "
            "ordinary JPEG or a PNG."
        )


def _count_scans(f) -> int:
    """Start-of-scan markers in a seekable file's bytes (left where it was), read 1 MiB at a time and no
    further than one past ``MAX_JPEG_SCANS``: memory stays bounded whatever the file's size."""
    if isinstance(f, io.BytesIO):
        return f.getbuffer().tobytes().count(b"\xff\xda")
    position = f.tell()
    try:
        f.seek(0)
        scans, last = 0, b""
        while scans <= MAX_JPEG_SCANS and (chunk := f.read(2**20)):
            scans += (last + chunk).count(b"\xff\xda")  # a marker split by the chunks counted once
            last = chunk[-1:]
        return scans
    finally:
        f.seek(position)


def file_too_large(label: str, size: int | None) -> ImageTooLargeError:
    """The error for an image file of ``size`` bytes (None: an unseekable one read past the bound)."""
    held = f"{size:,} bytes" if size is not None else f"more than {MAX_IMAGE_FILE_BYTES:,} bytes"
    return ImageTooLargeError(
        f"{label} holds {held}, more than any image mnistlab reads can take "
        f"({MAX_IMAGE_FILE_BYTES:,}); send the photo itself, or a smaller copy of it."
    )


def bounded_file(f, label: str = "the uploaded file"):
    """A file object as Pillow will read it, held to ``MAX_IMAGE_FILE_BYTES`` as a path is.

    Pillow reads a file it cannot seek (a pipe, an HTTP response) into memory
    whole, however long, and counting a JPEG's scans reads a seekable one to
    its end: a seekable file is measured (from its start, where Pillow reads
    it), any other read here up to one byte past the bound.
    """
    if getattr(f, "closed", False) is True:
        raise ImageError(f"{label} is closed; pass an open file, or its bytes.")
    if isinstance(f, io.TextIOBase) or getattr(f, "readable", lambda: True)() is False:  # "wb": its read fails
        how = "open as text" if isinstance(f, io.TextIOBase) else "not open for reading"
        raise ImageError(f"{label} is {how}; open it in binary mode ('rb'), or pass its bytes.")
    try:
        size = f.seek(0, io.SEEK_END)
    except (AttributeError, OSError, ValueError):  # not seekable (io.UnsupportedOperation is both)
        return io.BytesIO(_read_at_most(f, label))
    if isinstance(size, int) and size > MAX_IMAGE_FILE_BYTES:
        raise file_too_large(label, size)
    return f


def held_bytes(data: bytes | bytearray | memoryview, label: str = "the image data") -> io.BytesIO:
    """Image bytes as the file Pillow reads, held to ``MAX_IMAGE_FILE_BYTES`` as a path or a file object is:
    counting a JPEG's scans reads every byte (600 MB after a small JPEG's header: 3.7 s and a copy of them all)."""
    size = memoryview(data).nbytes  # before any copy; a memoryview's len counts its items, not its bytes
    if size > MAX_IMAGE_FILE_BYTES:
        raise file_too_large(label, size)
    return io.BytesIO(bytes(data))


def _read_at_most(f, label: str) -> bytes:
    """An unseekable file's bytes, read 1 MiB at a time; ``ImageTooLargeError`` past ``MAX_IMAGE_FILE_BYTES``."""
    chunks, total = [], 0
    while total <= MAX_IMAGE_FILE_BYTES and (chunk := f.read(min(2**20, MAX_IMAGE_FILE_BYTES + 1 - total))):
        if not isinstance(chunk, bytes):
            raise ImageError(f"{label} gives text, not bytes; open it in binary mode ('rb'), or pass its bytes.")
        chunks.append(chunk)
        total += len(chunk)
    if total > MAX_IMAGE_FILE_BYTES:
        raise file_too_large(label, None)
    return b"".join(chunks)


def check_callers_image(image: Image.Image) -> None:
    """Refuse a PIL image the caller made or opened that is closed already (used after its ``with
    Image.open(...)`` block ended), or that costs more to decode than ``check_decodable`` and
    ``check_jpeg_scans`` let a file cost."""
    fp = getattr(image, "fp", None)
    try:  # Pillow asserts an image has pixels: one opened and not decoded yet has none (a WebP lists no tiles yet)
        lazy = image.im is None  # asserts off (python -O)
    except AssertionError:
        lazy = True
    except ValueError:  # closed, before or after it was decoded: "Operation on closed image"
        lazy, fp = True, None
    # Not decoded, and its file gone or closed (opened from a file object a `with open(...)` closed; a WebP's
    # bytes are read as it opens): Pillow failed an assertion, or read a closed file as a cut one.
    if lazy and (fp is None or getattr(image, "tile", None) and getattr(fp, "closed", False) is True):
        raise ImageError(
            "The image is closed (closed before it was read, as a `with Image.open(...)` or `with open(...)` block "
            "closes it at its end); read it inside the block, or pass its path."
        )
    if image.format is None:  # made in memory, already decoded: only its size and shape matter, as an array's
        check_pixels(image.size, "the image")
        check_strip(image.size, "the image")
        return
    check_decodable(image.size, image.format, "the image")  # opened from a file: its pixels may not be decoded yet
    # A JPEG not decoded yet: its decoding to come is a pass over the pixels per scan.
    if image.format in JPEG_FORMATS and lazy and fp:
        check_jpeg_scans(fp, image.size, "the image")
    parts = len(image.tile) if isinstance(image, ImageFile.ImageFile) and lazy else 0
    if parts > MAX_TIFF_PARTS:  # a decoder set up for each part when it is decoded
        raise _cut_into(f"The image is cut into {parts:,}")


def check_parts(fp, label: str) -> None:
    """Refuse a file (a path, or a seekable file read from its start) whose parts would each cost Pillow time to
    read before a pixel is decoded: more than ``MAX_BLOCKS`` chunks of a PNG, segments of a JPEG before its first
    scan or extension blocks of a GIF before its first image, or a TIFF whose first image is cut into more than
    ``MAX_TIFF_PARTS`` strips or tiles. Any other file, or one cut short, is left to Pillow."""
    kind = format_by_signature(fp)
    if kind in _BLOCKS:
        parts, blocks = _BLOCKS[kind]
        _check_blocks(fp, label, kind, parts, blocks)
    elif kind == "TIFF":
        _check_tiff_parts(fp, _read_at(fp, 0, 16), label)


def _check_blocks(fp, label: str, kind: str, parts: str, blocks) -> None:
    """Count a file's blocks as ``blocks`` walks them (a step each), at most one past ``MAX_BLOCKS``."""
    try:
        with open(fp, "rb") if isinstance(fp, Path) else contextlib.nullcontext(fp) as f:
            position = f.tell()
            try:
                f.seek(0)
                if sum(1 for _ in zip(range(MAX_BLOCKS + 1), blocks(f))) <= MAX_BLOCKS:
                    return
            finally:
                f.seek(position)
    except (OSError, ValueError, AttributeError, IndexError, struct.error):
        return
    raise ImageTooLargeError(
        f"{label} is a {kind} of more than {MAX_BLOCKS:,} {parts}, more than any image needs, each costing time to "
        "read; save it again (any editor writes a few)."
    )


def _png_chunks(f):
    """A PNG's chunks up to its end, an animated PNG's later frames (``fcTL``, ``fdAT``: not read to open it) left out."""
    f.seek(len(PNG_SIGNATURE))
    while len(header := f.read(8)) == 8 and header[4:] != b"IEND":
        if header[4:] not in (b"fcTL", b"fdAT"):
            yield
        f.seek(struct.unpack(">I", header[:4])[0] + 4, io.SEEK_CUR)  # its data and CRC


def _jpeg_segments(f):
    """Pillow's steps through a JPEG's header: a stray byte (skipped one at a time), a fill byte, or a segment."""
    f.seek(2)
    while byte := f.read(1):
        yield
        marker = f.read(1) if byte == b"\xff" else b"\0"
        if marker in (b"", b"\xda"):  # the first scan: libjpeg reads the rest, in C
            return
        if marker == b"\xff":  # a fill byte: the next one is the marker's
            f.seek(-1, io.SEEK_CUR)
        elif byte == b"\xff" and not (marker in b"\x00\x01" or 0xD0 <= marker[0] <= 0xD9):  # one with a length
            f.seek(struct.unpack(">H", f.read(2))[0] - 2, io.SEEK_CUR)


def _gif_blocks(f):
    """A GIF's extensions and their sub-blocks before its first image, after its screen's colour table."""
    flags = f.read(13)[10]
    f.seek(3 << ((flags & 7) + 1) if flags & 0x80 else 0, io.SEEK_CUR)
    while f.read(1) == b"!":
        yield  # the extension itself: Pillow steps through an empty one too
        f.seek(1, io.SEEK_CUR)  # the extension's label
        while (size := f.read(1)) not in (b"", b"\0"):
            yield
            f.seek(size[0], io.SEEK_CUR)


# What each format's blocks are called, and the walk through them (``_check_blocks``).
_BLOCKS = {
    "PNG": ("chunks", _png_chunks),
    "JPEG": ("segments before its first scan", _jpeg_segments),
    "GIF": ("extension blocks before its first image", _gif_blocks),
}


def _check_tiff_parts(fp, head: bytes, label: str) -> None:
    """Refuse a TIFF whose first directory holds more than ``MAX_BLOCKS`` entries, or cuts its image into more
    than ``MAX_TIFF_PARTS`` strips or tiles."""
    order, big = "<" if head[:2] == b"II" else ">", head[:4] in (b"II+\0", b"MM\0+")
    offset, count, entry = ("Q", "Q", 20) if big else ("I", "H", 12)  # BigTIFF: 8-byte offsets and counts
    try:
        (where,) = struct.unpack_from(order + offset, head, 8 if big else 4)
        (entries,) = struct.unpack(order + count, _read_at(fp, where, struct.calcsize(count)))
        if entries > MAX_BLOCKS:  # a BigTIFF's count of 8 bytes: Pillow reads each entry in Python (1M: 3.2 s)
            raise ImageTooLargeError(
                f"{label} is a TIFF whose first directory holds {entries:,} entries, more than the {MAX_BLOCKS:,} "
                "any image needs, each costing time to read; save it again as a PNG or an ordinary TIFF."
            )
        # Every entry (at most 786 KB of them): Pillow takes the tags in any order, so filler first hides none.
        table = _read_at(fp, where + struct.calcsize(count), entries * entry)
        for at in range(0, len(table) - entry + 1, entry):
            tag = struct.unpack_from(order + "H", table, at)[0]
            parts = struct.unpack_from(order + offset, table, at + 4)[0]  # the entry's count of values
            if tag in (273, 324) and parts > MAX_TIFF_PARTS:  # StripOffsets, TileOffsets
                raise _cut_into(f"{label} is a TIFF cut into {parts:,}")
    except struct.error:
        return


def _cut_into(start: str) -> ImageTooLargeError:
    """The refusal of an image cut into more than ``MAX_TIFF_PARTS`` parts, its sentence begun by ``start``."""
    return ImageTooLargeError(
        f"{start} strips or tiles, more than the {MAX_TIFF_PARTS:,} any image's layout needs, each costing time "
        "to read; save it again as a PNG or an ordinary TIFF."
    )


def undecodable(label: str, exc: Exception) -> ImageError:
    """The error for an image whose bytes Pillow could not decode, or whose file the system would not read."""
    if isinstance(exc, OSError) and exc.errno is not None:  # the system refused the file, not its bytes
        return ImageError(unreadable(label, exc))
    return ImageError(f"{label} is truncated or corrupt ({exc}); send the complete file again.")


def unreadable(label: str, exc: OSError) -> str:
    """The sentence for a file the system would not open or read (permissions, a vanished file, an I/O error)."""
    return f"{label} cannot be read ({exc.strerror or exc}); check the path, and that you may read the file."


# How each format read starts (WebP: RIFF, its size, then WEBP).
_SIGNATURES = {PNG_SIGNATURE: "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\0": "TIFF"}
_SIGNATURES.update({b"MM\0*": "TIFF", b"II+\0": "TIFF", b"MM\0+": "TIFF"})  # BigTIFF too


def format_by_signature(fp) -> str | None:
    """The format read that a file's first bytes name (``"PNG"``, ``"TIFF"``...), whatever follows; None."""
    head = _read_at(fp, 0, 12)
    kind = next((name for start, name in _SIGNATURES.items() if head.startswith(start)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    return kind


def unidentified(label: str, fp) -> str:
    """The sentence for a file Pillow did not take for an image: one of a format read, by its first bytes, that
    cannot be decoded (cut short, or a kind Pillow does not read, such as a TIFF of float RGB), or another file."""
    kind = format_by_signature(fp)
    if kind is None:
        return f"{label} is not an image mnistlab reads ({FORMAT_NAMES}); send one of those."
    return (
        f"{label} is a {kind} file that cannot be decoded (cut short, corrupt, or of a kind of {kind} mnistlab does "
        "not read, such as floating-point colour); save it again as an 8-bit PNG or JPEG."
    )


def _read_at(fp, start: int, size: int) -> bytes:
    """Up to ``size`` bytes of a file from ``start`` (a path's, or a file object's, left where it was); b"" where
    it cannot be read."""
    try:
        if isinstance(fp, Path):
            with open(fp, "rb") as f:
                f.seek(start)
                return f.read(size)
        position = fp.tell()
        try:
            fp.seek(start)
            data = fp.read(size)
        finally:
            fp.seek(position)
        return data if isinstance(data, bytes) else b""
    except (OSError, ValueError, AttributeError, OverflowError):
        return b""
