"""Photos, scans and canvas drawings -> MNIST-style 28x28 digits, step by step."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, TiffImagePlugin
from scipy import ndimage

from mnistlab import ImageError, ImageTooLargeError, predict_image, read_number
from mnistlab.reading.admission import MAX_PIXELS
from mnistlab.reading.binarise import binarise
from mnistlab.reading.decode import WORK_SIDE, load_image, to_grey
from mnistlab.reading.geometry import center_by_mass, fit_to_box
from mnistlab.reading.paper import decide_polarity, flat_paper, ink_strength, remove_background
from mnistlab.reading.segment import segment_digits
from mnistlab.reading.sheet import isolate_page
from mnistlab.reading.steps import crop_to_ink, drop_specks, to_mnist
from mnistlab.testing import (
    NON_DIGIT_KINDS,
    STYLES,
    make_non_digit,
    make_number_photo,
    make_photo,
    make_pixel_bomb,
    place_on_table,
    run_cli,
)
from mnistlab.testing.hands import digit_samples
from mnistlab.testing.surfaces import CANVASES


@pytest.fixture(scope="session")
def test_digits(mnist_full):
    n = mnist_full.details["n_train"]
    return np.asarray(mnist_full.images[n:]), np.asarray(mnist_full.target[n:])


def big(digit: np.ndarray, size: int = 224) -> np.ndarray:
    """A 28x28 digit drawn large, anti-aliased: float (size, size), ink 1 on 0."""
    return np.asarray(
        Image.fromarray(digit.astype(np.float32) / 255, "F").resize((size, size), Image.Resampling.BICUBIC)
    ).clip(0, 1)


def encode(array01: np.ndarray, fmt: str, mode: str = "L", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(array01 * 255).astype(np.uint8), mode).save(buf, fmt, **kw)
    return buf.getvalue()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float).ravel(), b.astype(float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


# --- load_image and to_grey ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_every_format_gives_the_same_digit(test_digits, fmt):
    digit = test_digits[0][0]
    page = 1 - 0.8 * big(digit)  # dark ink on white paper
    reference = to_mnist(encode(page, "PNG"))
    assert similarity(to_mnist(encode(page, fmt)), reference) > 0.97
    assert similarity(reference, digit) > 0.8


def test_exif_orientation_is_applied(test_digits):
    upright = Image.fromarray(np.round((1 - big(test_digits[0][1])) * 255).astype(np.uint8), "L")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways phone writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    assert load_image(buf.getvalue()).size == upright.size
    assert similarity(to_mnist(buf.getvalue()), to_mnist(upright)) > 0.97


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_every_tiff_orientation_reads_upright_from_its_path(test_digits, tmp_path, mode):
    """An uncompressed TIFF turned a quarter by its orientation (5 to 8), given by its path (mnistlab predict, a
    path or Image.open in Python), was read as stripes (orientation 6: an 8, 'does not look like a digit'; 5: a
    confident 1), where its bytes (the web API) read as the 4 it is: Pillow memory-mapped it at its upright size."""
    page = np.pad(1 - big(test_digits[0][4]), ((40, 0), (0, 0)), constant_values=1)  # 224 wide, 264 high
    upright = Image.fromarray(np.round(page * 255).astype(np.uint8), "L").convert(mode)
    expected = to_mnist(upright)
    stored_as = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_90"}
    stored_as |= {7: "TRANSVERSE", 8: "ROTATE_270"}
    for orientation in range(1, 9):
        path = tmp_path / f"scan {orientation}.tif"
        exif = Image.Exif()
        exif[0x0112] = orientation
        method = stored_as.get(orientation)
        (upright if method is None else upright.transpose(Image.Transpose[method])).save(path, exif=exif)
        with Image.open(path) as opened:
            seen = [to_mnist(path), to_mnist(str(path)), to_mnist(path.read_bytes()), to_mnist(opened)]
        for image in seen:
            assert similarity(image, expected) > 0.99, orientation


def test_a_jpeg_opened_with_pillow_reads_as_its_file(test_digits, tmp_path):
    """A JPEG given as Image.open(path) was decoded whole and then reduced, where its file, its bytes and the web
    API decode it reduced: another 28x28 image (a photo's differed by 174 in a pixel), another probability."""
    page = np.pad(1 - 0.8 * big(test_digits[0][5], 700), ((100, 0), (0, 0)), constant_values=1)
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # turned, as a phone writes it
    Image.fromarray(np.round(page * 255).astype(np.uint8)).save(path, quality=90, exif=exif)
    expected = to_mnist(path)
    with Image.open(path) as opened:
        np.testing.assert_array_equal(to_mnist(opened), expected)
        assert opened.tile  # the caller's image left as it was: still to be decoded, whole, when it wants it
        assert opened.size == (700, 800)  # not reduced, nor turned: the caller's to do
    with open(path, "rb") as f, Image.open(f) as opened:
        f.seek(5)
        np.testing.assert_array_equal(to_mnist(opened), expected)
        assert f.tell() == 5
    with Image.open(path) as opened:
        answer, by_path = predict_image(opened), predict_image(path)
    assert (answer["digit"], answer["probability"]) == (by_path["digit"], by_path["probability"])


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "PNG", "WEBP"])
def test_a_file_of_several_pictures_is_read_from_its_first(test_digits, fmt):
    """As the README says: a TIFF of several pages, an animated GIF, PNG or WebP is read from its first page or
    frame alone, whichever way it comes."""
    pages = [Image.fromarray(np.round((1 - big(test_digits[0][i])) * 255).astype(np.uint8)) for i in (6, 7)]
    several, first = io.BytesIO(), io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    pages[0].save(several, fmt, save_all=True, append_images=pages[1:], **extra)
    pages[0].save(first, fmt, **extra)
    expected = to_mnist(first.getvalue())
    assert similarity(expected, to_mnist(pages[1])) < 0.9  # the pages tell apart
    with Image.open(io.BytesIO(several.getvalue())) as opened:
        assert getattr(opened, "n_frames", 1) == 2
        np.testing.assert_array_equal(to_mnist(several.getvalue()), expected)
        np.testing.assert_array_equal(to_mnist(opened), expected)


def test_sixteen_bit_grey(test_digits):
    page = 1 - 0.8 * big(test_digits[0][2])
    buf = io.BytesIO()
    Image.fromarray(np.round(page * 40000 + 2000).astype(np.uint16)).save(buf, "PNG")
    im = load_image(buf.getvalue())
    assert im.mode.startswith("I")
    assert similarity(to_mnist(buf.getvalue()), to_mnist(encode(page, "PNG"))) > 0.98


@pytest.mark.parametrize("stroke", [0, 255])
def test_transparent_canvas_with_black_or_white_strokes(test_digits, stroke):
    digit = test_digits[0][3]
    alpha = big(digit)
    rgba = np.zeros(alpha.shape + (4,), np.uint8)
    rgba[..., :3] = stroke  # the colour of transparent pixels is irrelevant, strokes carry alpha
    rgba[..., 3] = np.round(alpha * 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    grey = to_grey(buf.getvalue())
    # The strokes contrast with what the transparent background became.
    assert abs(float(grey[alpha > 0.9].mean()) - float(grey[alpha == 0].mean())) > 0.9
    assert similarity(to_mnist(buf.getvalue()), digit) > 0.9


def test_palette_rgb_and_arrays_agree(test_digits):
    page = 1 - big(test_digits[0][4])
    grey_png = encode(page, "PNG")
    rgb = np.repeat(np.round(page * 255).astype(np.uint8)[..., None], 3, -1)
    reference = to_mnist(grey_png)
    assert similarity(to_mnist(rgb), reference) > 0.99
    assert similarity(to_mnist(Image.open(io.BytesIO(grey_png)).convert("P")), reference) > 0.97
    assert similarity(to_mnist(page.astype(np.float32)), reference) > 0.99


def test_a_big_8bit_array_is_read_as_its_file_is_in_bounded_memory(tmp_path):
    """A 12-megapixel photo as an array (``cv2.imread``'s) was made float64 at full size before it was reduced:
    1.5 s and 550 MiB more, where its JPEG took 0.05 s. It is reduced while still 8-bit, and read as its file is."""
    import tracemalloc

    photo = np.full((3000, 4000, 3), 225, np.uint8)
    cv2.putText(photo, "4", (1300, 2100), cv2.FONT_HERSHEY_SIMPLEX, 50, (30, 30, 30), 50)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    from_file = predict_image(tmp_path / "photo.png")
    tracemalloc.start()
    from_array = predict_image(photo)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert from_array["digit"] == from_file["digit"] == 4 and from_array["confident"] and from_file["confident"]
    assert from_array["probability"] == pytest.approx(from_file["probability"], abs=0.02)
    assert peak < 40 * 2**20, peak  # its float64 copy alone was 275 MiB


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_integers_of_0_and_1_read_as_a_mask_does(dtype):
    """A 0/1 mask as integers (``(img > 128).astype(np.uint8)``, or ``np.array`` of a list) was read on the 0-255
    scale: a black page, "no ink found", where the same mask as bool read its digit."""
    digit = np.zeros((28, 28), np.uint8)
    cv2.line(digit, (14, 4), (14, 24), 255, 3)
    mask = digit > 0
    big_mask = cv2.resize(mask.astype(np.uint8), (280, 280), interpolation=cv2.INTER_NEAREST) > 0
    for m in (mask, big_mask):
        answer = predict_image(m.astype(dtype))
        assert answer["confident"] and answer["digit"] == 1, answer
        assert np.array_equal(to_mnist(m.astype(dtype)), to_mnist(m))
    assert to_grey(np.array([[0, 2], [1, 0]], dtype)).max() == pytest.approx(2 / 255)  # not a mask: 0-255


@pytest.mark.parametrize(
    "mode", ["1", "P", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "La", "PA"]
)
def test_a_pil_image_of_any_mode_reads_as_its_grey(test_digits, mode):
    """A PIL image of mode La (grey with premultiplied alpha, as Pillow resizes LA) raised Pillow's bare
    ValueError "conversion from La to L not supported"."""
    grey = Image.fromarray(np.round((1 - big(test_digits[0][4])) * 255).astype(np.uint8), "L")
    via = {"La": "LA", "PA": "LA", "RGBa": "RGBA"}.get(mode, "L")  # the modes Pillow makes only from these
    image = grey.convert(via).convert(mode)
    assert image.mode == mode
    assert similarity(to_mnist(image), to_mnist(grey)) > 0.97


def test_large_photo_is_reduced_before_processing():
    grey = to_grey(np.full((3000, 2000), 200, np.uint8))
    assert max(grey.shape) == WORK_SIDE == 320


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"hello, this is a text file\n", "not an image"),
        (make_pixel_bomb(100_000, 100_000), "pixels"),
        (make_pixel_bomb(8_000, 8_000), "pixels"),  # 64 MP: under Pillow's own limit, over ours
        (make_pixel_bomb(1, 49_990_000), "strip"),  # under the pixel limit, but no photo is that shape
        (make_pixel_bomb(5_000, 5_000), "JPEG"),  # 25 MP that a PNG decoder must decode whole
    ],
)
def test_bad_bytes_raise_image_error(data, words):
    with pytest.raises(ImageError, match=words):
        load_image(data)  # a pixel bomb is refused from its header: these bytes hold no pixels to decode


def test_a_file_of_a_format_read_that_cannot_be_decoded_is_not_called_another_format(tmp_path):
    """A colour TIFF of 32-bit floats (as OpenCV writes one), or a PNG cut short after its signature, was "not an image
    mnistlab reads (PNG, JPEG, BMP, TIFF, WebP or GIF); send one of those": a TIFF or a PNG is what was sent."""
    path = tmp_path / "float.tif"
    path.write_bytes(cv2.imencode(".tiff", np.zeros((28, 28, 3), np.float32))[1].tobytes())
    with pytest.raises(
        ImageError, match=r"float.tif is a TIFF file that cannot be decoded \(.*\); save it again as an"
    ):
        predict_image(path)
    png = encode(np.ones((28, 28)), "PNG")[:8]  # its signature alone
    for cut in (png, io.BytesIO(png)):
        with pytest.raises(ImageError, match=r"is a PNG file that cannot be decoded \(cut short, corrupt"):
            predict_image(cut)
    with pytest.raises(ImageError, match=r"is not an image mnistlab reads \(PNG, JPEG, BMP, TIFF, WebP or GIF\)"):
        predict_image(b"<svg>" + png)


def _strip_png(width: int, height: int) -> bytes:
    """A real PNG of ``width`` x ``height`` black pixels, its data compressed as it is written (about 100 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte, then the row's pixels
    rows_per_block = max(1, 2**20 // len(row))
    data = b"".join(packer.compress(row * min(rows_per_block, height - i)) for i in range(0, height, rows_per_block))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data + packer.flush()) + chunk(b"IEND", b"")


def _tiled_tiff(width: int, height: int, tile: int, filler: int = 0) -> bytes:
    """An uncompressed 8-bit grey TIFF of ``width`` x ``height`` black pixels in ``tile`` x ``tile`` tiles, every
    tile's offset pointing at the same one tile of pixels; its directory last, ``filler`` entries (NewSubfileType)
    before the image's own."""
    n = -(-width // tile) * -(-height // tile)
    tags = {256: (4, width), 257: (4, height), 258: (3, 8), 259: (3, 1), 262: (3, 1), 277: (3, 1), 322: (4, tile)}
    tags |= {323: (4, tile)}
    pixels_at, pixels = 8, bytes(tile * tile + tile * tile % 2)  # the directory after them at a word boundary
    offsets_at = pixels_at + len(pixels)
    entries = [struct.pack("<HHII", 254, 4, 1, 0)] * filler
    entries += [struct.pack("<HHII", tag, kind, 1, value) for tag, (kind, value) in sorted(tags.items())]
    entries += [struct.pack("<HHII", 324, 4, n, offsets_at), struct.pack("<HHII", 325, 4, n, offsets_at + 4 * n)]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    parts = struct.pack("<I", pixels_at) * n + struct.pack("<I", tile * tile) * n
    return b"II*\0" + struct.pack("<I", offsets_at + len(parts)) + pixels + parts + ifd


def test_a_tiff_cut_into_more_tiles_than_any_layout_needs_is_refused_from_its_header(tmp_path):
    """A 720 KB TIFF of 300 x 300 pixels in 1-pixel tiles took 1.5 s to answer (Pillow lists its 90,000 tiles as
    it opens the file, then sets a decoder up for each, on each look); one of 2000 x 2000 (32 MB), 99 s and 1.35 GB."""
    path = tmp_path / "tiles.tif"
    path.write_bytes(_tiled_tiff(300, 300, 1))
    with pytest.raises(ImageTooLargeError, match="tiles.tif is a TIFF cut into 90,000 strips or tiles, more than"):
        predict_image(path)
    with open(path, "rb") as f, pytest.raises(ImageTooLargeError, match="cut into 90,000 strips or tiles"):
        predict_image(f)
    assert predict_image(_tiled_tiff(320, 320, 16))["confident"] is False  # the spec's smallest tiles: 400 of them


def test_a_png_of_more_chunks_than_any_image_needs_is_refused_before_they_are_read(tmp_path):
    """A 1.2 MB PNG of 100 x 100 pixels and 100,000 empty chunks took over 1 s to answer (Pillow reads chunk by chunk,
    in Python), one of 12 MB 12 s: the chunks are counted from their headers first, at most one past the bound."""

    def chunk(kind: bytes, data: bytes = b"") -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"".join(b"\0" + b"\xff" * 100 for _ in range(100)))
    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100, 100, 8, 0, 0, 0, 0))
    for many in (chunk(b"abCd") * 100_000 + chunk(b"IDAT", pixels), chunk(b"IDAT", pixels) + chunk(b"IDAT") * 100_000):
        path = tmp_path / "chunks.png"
        path.write_bytes(header + many + chunk(b"IEND"))
        for source in (path, path.read_bytes()):
            with pytest.raises(ImageTooLargeError, match=r"is a PNG of more than 65,536 chunks, more than any image"):
                predict_image(source)
    path.write_bytes(header + chunk(b"IDAT", pixels) + chunk(b"abCd") * 1000 + chunk(b"IEND"))
    assert predict_image(path)["confident"] is False  # a blank page


def test_a_jpeg_or_gif_header_of_more_blocks_than_any_image_needs_is_refused_before_they_are_read():
    """Pillow reads a JPEG's segments before its first scan, and a GIF's extension blocks before its first image,
    one by one in Python: 4 MB of a million empty comments took 6.4 s to answer as a JPEG; 8 MB of 4 million
    comment blocks 3.3 s and 346 MB as a GIF. Counted from their headers first, at most one past the bound."""
    jpeg, gif = io.BytesIO(), io.BytesIO()
    Image.new("L", (100, 100), 255).save(jpeg, "JPEG")
    Image.new("L", (100, 100), 255).save(gif, "GIF")
    jpeg_data, gif_data = jpeg.getvalue(), gif.getvalue()
    image_at = 13 + 3 * 2 ** ((gif_data[10] & 7) + 1)  # the image descriptor, after the screen's colour table
    assert gif_data[image_at : image_at + 1] == b","
    bombs = {
        "JPEG of more than 65,536 segments": jpeg_data[:2] + b"\xff\xfe\x00\x02" * 70_000 + jpeg_data[2:],
        "GIF of more than 65,536 extension blocks": gif_data[:image_at]
        + b"!\xfe"
        + b"\x01a" * 70_000
        + b"\0"
        + gif_data[image_at:],
        "GIF of more than 65,536 extension blocks ": gif_data[:image_at] + b"!\xfe\0" * 70_000 + gif_data[image_at:],
    }
    for says, data in bombs.items():
        with pytest.raises(ImageTooLargeError, match=says):
            predict_image(data)
        with pytest.raises(ImageTooLargeError, match=says):
            predict_image(io.BytesIO(data))
    few = {"JPEG": jpeg_data[:2] + b"\xff\xfe\x00\x02" * 100 + jpeg_data[2:]}
    few["GIF"] = gif_data[:image_at] + b"!\xfe" + b"\x01a" * 100 + b"\0" + gif_data[image_at:]
    for data in few.values():
        assert predict_image(data)["confident"] is False  # a blank page


def test_the_limits_on_an_images_parts_hold_however_they_are_hidden_and_spare_animated_pngs(tmp_path):
    """A review of the limits above: a GIF of empty extensions (no sub-block to count; a million took 0.4 s), a
    TIFF whose tile list follows 4,100 filler entries (read: only 4,096 were looked at), and a tiled TIFF the
    caller opened themselves were let through; an animated PNG's later frames counted as chunks to refuse."""
    with pytest.raises(ImageTooLargeError, match="cut into 90,000 strips or tiles"):
        predict_image(_tiled_tiff(300, 300, 1, filler=4100))
    with (
        Image.open(io.BytesIO(_tiled_tiff(300, 300, 1))) as opened,
        pytest.raises(ImageTooLargeError, match="90,000 strips or tiles"),
    ):
        predict_image(opened)

    def chunk(kind: bytes, data: bytes = b"") -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def frame_control(n: int) -> bytes:
        return struct.pack(">IIIIIHHBB", n, 20, 20, 0, 0, 1, 10, 0, 0)

    pixels = zlib.compress(b"".join(b"\0" + b"\xff" * 20 for _ in range(20)))
    frames = b"".join(chunk(b"fcTL", frame_control(2 * i + 1)) + chunk(b"fdAT", struct.pack(">I", 2 * i + 2) + pixels)
                      for i in range(40_000))  # fmt: skip
    animated = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 20, 8, 0, 0, 0, 0))
        + chunk(b"acTL", struct.pack(">II", 40_001, 0))
        + chunk(b"fcTL", frame_control(0))
        + chunk(b"IDAT", pixels)
        + frames
        + chunk(b"IEND")
    )
    assert predict_image(animated)["confident"] is False  # its first frame, a blank page


def test_a_bigtiff_directory_of_more_entries_than_any_image_needs_is_refused_before_they_are_read():
    """A BigTIFF counts its directory's entries in 8 bytes, and Pillow reads each in Python: 20 MB of a million
    entries took 3.2 s to answer. Refused from the count."""
    tags = [(256, 4, 16), (257, 4, 16), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 16, 0), (277, 3, 1)]
    tags += [(278, 4, 16), (279, 16, 256)] + [(65000, 4, 7)] * 70_000
    pixels_at = 16 + 8 + 20 * len(tags) + 8
    entries = b"".join(
        struct.pack("<HHQQ", tag, kind, 1, pixels_at if tag == 273 else value) for tag, kind, value in tags
    )
    data = b"II+\0" + struct.pack("<HHQQ", 8, 0, 16, len(tags)) + entries + struct.pack("<Q", 0) + bytes(256)
    with pytest.raises(ImageTooLargeError, match="is a TIFF whose first directory holds 70,009 entries, more than"):
        predict_image(data)


_BOUNDED_DECODE = """
import resource, sys
from mnistlab.errors import ImageTooLargeError
from mnistlab.reading.decode import load_image
data = open(sys.argv[1], "rb").read()
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + 200 * 2**20, resource.RLIM_INFINITY))  # 200 MiB more than now
resource.setrlimit(resource.RLIMIT_CPU, (10, 10))
try:
    load_image(data)
except ImageTooLargeError as exc:
    print("refused:", exc)
"""


def test_a_pixel_strip_is_refused_within_a_fixed_memory_and_cpu_bound(tmp_path):
    path = tmp_path / "strip.png"
    path.write_bytes(_strip_png(1, 49_990_000))  # about 100 KB that decode to 50 MB and take seconds
    run = subprocess.run([sys.executable, "-c", _BOUNDED_DECODE, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("refused:") and "strip" in run.stdout


def test_an_image_file_larger_than_any_image_is_refused_by_its_size_unread(tmp_path):
    """A JPEG's header followed by 4 GiB (sparse, no disk): its scans were counted through every byte, 13 s of
    reading for a blank answer; refused from its size before it is opened."""
    jpeg = io.BytesIO()
    Image.new("L", (50, 50)).save(jpeg, "JPEG")
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.write(jpeg.getvalue()[:-2])  # no end-of-image marker: the rest of the file could hold scans
        f.truncate(4 * 2**30)
    with pytest.raises(ImageTooLargeError, match=f"huge.jpg holds {4 * 2**30:,} bytes, more than any image"):
        to_mnist(path)
    assert path.stat().st_blocks * 512 < 2**20  # sparse: nothing was written to fill it


def test_image_bytes_are_held_to_the_size_a_file_is():
    """A JPEG's header and 256 MiB more, as bytes: refused as the same bytes in a BytesIO or a file are, where its
    scans were counted through a copy of every byte (600 MB: 3.7 s and 616 MB more memory, for each look)."""
    from mnistlab.reading.admission import MAX_IMAGE_FILE_BYTES

    jpeg = io.BytesIO()
    Image.new("L", (50, 50)).save(jpeg, "JPEG")
    data = jpeg.getvalue()[:-2] + bytes(MAX_IMAGE_FILE_BYTES)
    for read in (predict_image, read_number):
        with pytest.raises(ImageTooLargeError, match=f"^the image data holds {len(data):,} bytes, more than any image"):
            read(data)
    # A memoryview of 4-byte items counts a quarter of its bytes in len(): held to its bytes, before any copy.
    words = memoryview(np.frombuffer(data[: len(data) // 4 * 4], np.uint32))
    with pytest.raises(ImageTooLargeError, match=f"^the image data holds {words.nbytes:,} bytes"):
        predict_image(words)


def test_a_file_object_is_held_to_the_size_a_path_is(tmp_path, test_digits):
    """A JPEG's header followed by 1 MiB past the bound (sparse): as an open file its scans were counted through
    every byte; through a pipe (a process's output, an HTTP response) Pillow read it into memory whole, however
    long. Both are refused by their size; a digit through a pipe still reads."""
    from mnistlab.reading.admission import MAX_IMAGE_FILE_BYTES

    jpeg = io.BytesIO()
    Image.new("L", (50, 50)).save(jpeg, "JPEG")
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.write(jpeg.getvalue()[:-2])
        f.truncate(MAX_IMAGE_FILE_BYTES + 2**20)
    with (
        open(path, "rb") as f,
        pytest.raises(ImageTooLargeError, match=f"file holds {MAX_IMAGE_FILE_BYTES + 2**20:,} bytes"),
    ):
        predict_image(f)
    # A BytesIO of the caller's is a file object like any other (it was let through unmeasured, as bytes were).
    held = io.BytesIO(jpeg.getvalue()[:-2] + bytes(MAX_IMAGE_FILE_BYTES))
    with pytest.raises(ImageTooLargeError, match=f"file holds {MAX_IMAGE_FILE_BYTES + len(jpeg.getvalue()) - 2:,}"):
        predict_image(held)
    del held
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as cat:
        with pytest.raises(ImageTooLargeError, match=f"file holds more than {MAX_IMAGE_FILE_BYTES:,} bytes"):
            predict_image(cat.stdout)
        cat.kill()
    (tmp_path / "seven.png").write_bytes(encode(1 - big(test_digits[0][0]), "PNG"))
    with subprocess.Popen(["cat", str(tmp_path / "seven.png")], stdout=subprocess.PIPE) as cat:
        assert predict_image(cat.stdout)["digit"] == test_digits[1][0]
    with open(tmp_path / "seven.png") as text, pytest.raises(ImageError, match=r"open as text; open it in binary mode"):
        predict_image(text)


def test_truncated_and_missing_files(tmp_path, test_digits):
    whole = encode(1 - big(test_digits[0][5]), "PNG")
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        to_mnist(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="empty"):
        to_mnist(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="does not exist"):
        to_mnist(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="holds a NUL character"):  # was numpy's bare ValueError
        to_mnist(str(tmp_path / "a\x00b.png"))
    with pytest.raises(ImageError, match="shape"):
        to_mnist(np.zeros((4, 4, 7)))
    assert MAX_PIXELS >= 24_000_000  # a phone photo still passes


def _tiff_with_a_tag_past_its_end(ink: np.ndarray) -> bytes:
    """A TIFF of ``ink`` (dark on white) whose Software tag points past the file's end: Pillow warns as it opens it."""
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[305] = "a scanner of long name"
    buf = io.BytesIO()
    Image.fromarray(255 - ink).save(buf, "TIFF", tiffinfo=tags)
    data = bytearray(buf.getvalue())
    (directory,) = struct.unpack_from("<I", data, 4)
    for entry in range(directory + 2, directory + 2 + 12 * struct.unpack_from("<H", data, directory)[0], 12):
        if struct.unpack_from("<H", data, entry)[0] == 305:
            struct.pack_into("<I", data, entry + 8, 10**8)
    return bytes(data)


def test_what_pillow_warns_of_a_damaged_file_stays_out_of_the_answer(tmp_path):
    """A TIFF with one damaged tag printed Pillow's warning, its source file and line, around the answer on stderr
    (and raised it where warnings are errors); the answer or the one-sentence refusal now comes alone."""
    ink = np.zeros((120, 90), np.uint8)
    cv2.line(ink, (45, 20), (45, 100), 255, 9)
    (tmp_path / "one.tif").write_bytes(damaged := _tiff_with_a_tag_past_its_end(ink))
    (tmp_path / "cut.tif").write_bytes(damaged[:-200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert predict_image(damaged)["digit"] == 1
    result = run_cli(["predict", str(tmp_path / "one.tif"), str(tmp_path / "cut.tif"), "--json"])
    assert json.loads(result.stdout.splitlines()[0])["digit"] == 1
    assert result.stderr == "" and result.returncode == 1
    assert "error" in json.loads(result.stdout.splitlines()[1])


def test_a_pil_image_closed_or_cut_is_refused_in_a_sentence(tmp_path, test_digits):
    """A PIL image used after its ``with Image.open(...)`` block ended, or opened from a cut file and not decoded
    yet, raised Pillow's bare AssertionError, ValueError or OSError; a sentence now, as for the file itself."""
    whole = encode(1 - big(test_digits[0][5]), "PNG")
    (tmp_path / "seven.png").write_bytes(whole)
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with Image.open(tmp_path / "seven.png") as lazy:
        pass  # closed before it was decoded
    with Image.open(tmp_path / "seven.png") as loaded:
        loaded.load()  # decoded inside the block: its pixels stay
    closed_after = Image.open(tmp_path / "seven.png")
    closed_after.load()
    closed_after.close()
    for closed in (lazy, closed_after):
        for read in (predict_image, read_number):
            with pytest.raises(ImageError, match=r"^The image is closed \(closed before it was read"):
                read(closed)
    with Image.open(tmp_path / "cut.png") as cut, pytest.raises(ImageError, match="the image is truncated or corrupt"):
        predict_image(cut)
    with Image.open(tmp_path / "seven.png") as opened:
        assert predict_image(opened)["digit"] == predict_image(loaded)["digit"] == test_digits[1][5]


def test_a_webp_opened_with_pillow_reads_as_its_file(tmp_path, test_digits):
    """Every WebP given as Image.open(path) raised Pillow's bare AssertionError from predict_image and read_number:
    Pillow lists a WebP's parts only as it decodes it, so the check for a closed image took it for a decoded one
    and asked for its pixels. It reads as its file does now; closed before it was read, it is said to be."""
    page = Image.fromarray(np.round((1 - big(test_digits[0][8])) * 255).astype(np.uint8))
    for name, kw in {"lossy.webp": {"quality": 90}, "lossless.webp": {"lossless": True}}.items():
        page.save(tmp_path / name, **kw)
        page.save(tmp_path / f"animated {name}", save_all=True, append_images=[page.rotate(90)], **kw)
    for path in sorted(tmp_path.iterdir()):
        with Image.open(path) as opened:
            np.testing.assert_array_equal(to_mnist(opened), to_mnist(path))
        with Image.open(path) as opened:
            assert read_number(opened)["number"] == read_number(path)["number"]
        with Image.open(path) as closed:
            pass
        with pytest.raises(ImageError, match=r"^The image is closed \(closed before it was read"):
            predict_image(closed)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "GIF"])
def test_a_pil_image_whose_file_object_was_closed_is_said_to_be_closed(tmp_path, test_digits, fmt):
    """Image.open(f) used after its ``with open(path, "rb") as f`` block ended: a JPEG raised Python's bare
    ValueError ('I/O operation on closed file'), and a PNG, TIFF or GIF was 'truncated or corrupt ... send the
    complete file again', though the file was whole; each is now said to be closed, as a closed image is."""
    path = tmp_path / f"seven.{fmt.lower()}"
    path.write_bytes(encode(1 - big(test_digits[0][5]), fmt))
    with open(path, "rb") as f:
        opened = Image.open(f)
    for read in (predict_image, read_number):
        with pytest.raises(ImageError, match=r"^The image is closed \(closed before it was read.* `with open"):
            read(opened)
    with open(path, "rb") as f, Image.open(f) as still_open:
        assert predict_image(still_open)["digit"] == predict_image(path)["digit"]


# --- the steps ----------------------------------------------------------------------------


def lit_page(ink: np.ndarray, rng) -> np.ndarray:
    """Dark ink on paper under strong uneven light, with texture."""
    h, w = ink.shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    light = 0.45 + 0.5 * x + 0.15 * np.sin(3 * y)
    paper = 0.9 + 0.03 * ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.5) / 0.2
    return np.clip(light * paper * (1 - 0.75 * ink), 0, 1).astype(np.float32)


def test_isolate_page_finds_a_sheet_on_a_table(test_digits):
    images, _ = test_digits
    rng = np.random.default_rng(6)
    photos = [make_photo(images[i], rng, style="paper") for i in range(12)]
    on_table = [place_on_table(p, rng) for p in photos]
    for photo, table in zip(photos[:3], on_table[:3]):
        grey = to_grey(table)
        assert isolate_page(grey).size < 0.8 * grey.size  # cut down to the sheet
        assert isolate_page(to_grey(photo)).shape == to_grey(photo).shape  # a sheet filling the frame is left alone
    scores = [similarity(to_mnist(t), to_mnist(p)) for t, p in zip(on_table, photos)]
    assert np.median(scores) > 0.8  # the sheet is turned a little, so is the digit
    canvas = make_photo(images[0], rng, style="canvas-white-on-black")
    assert isolate_page(to_grey(canvas)).shape == to_grey(canvas).shape  # a drawn digit is not a page


def bold_eight(width: int, height: int, *, touching: bool) -> np.ndarray:
    """A fat 8 drawn white on black, as a finger draws it on a small canvas: (height, width) uint8, a third
    of it ink, its lower loop running off the bottom edge where ``touching``."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((0.22 * width, 4, 0.78 * width, 0.45 * height), outline=255, width=int(0.16 * width))
    bottom = height + 0.08 * width if touching else height - 4
    draw.ellipse((0.12 * width, 0.40 * height, 0.88 * width, bottom), outline=255, width=int(0.17 * width))
    return np.asarray(canvas)


@pytest.mark.parametrize("touching", [False, True])
@pytest.mark.parametrize("white_on_black", [True, False])
def test_a_fat_digit_filling_a_canvas_is_no_sheet_on_a_table(touching, white_on_black):
    eight = bold_eight(200, 276, touching=touching)
    drawing = encode((eight if white_on_black else 255 - eight) / 255, "PNG")
    grey = to_grey(drawing)
    # Its filled-in outline is large, solid and brighter than the rest, as a sheet's is; but the 8 and the
    # canvas are each one exact grey. Cut out as a sheet, the 8's holes were read as ink (a 6, not sure).
    assert isolate_page(grey).shape == grey.shape
    result = predict_image(drawing)
    assert (result["digit"], result["confident"]) == (8, True)


def test_decide_polarity(test_digits):
    rng = np.random.default_rng(0)
    ink = big(test_digits[0][6])
    assert decide_polarity(lit_page(ink, rng)) is True
    assert decide_polarity(ink.astype(np.float32)) is False  # white on black, like MNIST
    assert decide_polarity(0.2 + 0.6 * ink.astype(np.float32)) is False  # chalk on a blackboard


def test_remove_background_flattens_uneven_light(test_digits):
    rng = np.random.default_rng(1)
    ink = big(test_digits[0][7], 300)
    page = lit_page(ink, rng)
    assert not binarise(remove_background(lit_page(np.zeros_like(ink), rng), True)).any()  # empty page: no ink
    mask = binarise(remove_background(page, True))
    truth = ink > 0.5
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.75


def full_fit(grey: np.ndarray) -> np.ndarray:
    """Ink strength with the paper fitted, whatever the image: what a clean drawing's shortcut must agree with."""
    return remove_background(grey, decide_polarity(grey))


@pytest.mark.parametrize(("paper", "stroke"), [(1.0, 0.0), (0.0, 1.0), (0.6, 0.1), (0.3, 0.9)])
def test_a_clean_drawing_takes_its_paper_as_is_and_reads_as_the_fit_does(test_digits, paper, stroke):
    # Hard-edged strokes on a canvas whose fitting thumbnail is 8x8-pixel blocks: no block is
    # barely touched by ink, so nothing pulls the fit off the paper and the two agree to float rounding.
    drawn = big(test_digits[0][3], 256) > 0.5
    grey = np.where(drawn, stroke, paper).astype(np.float32)
    assert flat_paper(grey) == (pytest.approx(paper), stroke < paper)
    ink = ink_strength(grey)
    np.testing.assert_allclose(ink, full_fit(grey), atol=1e-6)
    assert (ink[~drawn] == 0).all() and ink[drawn].min() > 0.5


def test_canvas_exports_take_the_shortcut_and_read_as_the_fit_does():
    rng = np.random.default_rng(5)
    greys = [
        to_grey(s.data)
        for src in ("pen", "optdigits")
        for where in CANVASES
        for s in digit_samples(src, 4, rng, surface=where)
    ]
    flat = [grey for grey in greys if flat_paper(grey) is not None]
    assert len(flat) >= 0.8 * len(greys)  # the others: a digit filling most of its canvas
    for grey in flat:
        # Anti-aliased edges averaged into the fit's thumbnail move it by a hair, no more.
        np.testing.assert_allclose(ink_strength(grey), full_fit(grey), atol=1e-3)


def test_a_photo_with_flat_patches_takes_the_full_fit(test_digits):
    rng = np.random.default_rng(3)
    drawn = big(test_digits[0][4], 240)
    page = lit_page(drawn, rng)  # the light rises from left to right
    dim_paper = drawn[:, :80] < 0.01
    # Blown out on its bright side: a flat white patch along the border. Flat in places is not flat.
    clipped = page.copy()
    clipped[:, 160:] = 1.0
    clipped[:6] = clipped[-6:] = 1.0
    assert flat_paper(clipped) is None
    guess = 1.0 - clipped  # the white of the patch taken for the paper, as a clean drawing's would be
    ink = ink_strength(clipped)
    assert np.median(guess[:, :80][dim_paper]) > 0.3  # the dim paper would read as ink...
    assert abs(np.median(ink[:, :80][dim_paper])) < 0.05  # ...the fitted light leaves it paper
    # A white frame all round (a scanner's margin) around an ordinary photo: not flat either.
    framed = page.copy()
    framed[:10] = framed[-10:] = framed[:, :10] = framed[:, -10:] = 1.0
    assert flat_paper(framed) is None
    # Blown out nearly everywhere: it passes, and then the fit settles on the same white.
    burnt = np.clip(2.5 * page, 0.0, 1.0)
    burnt[:6] = burnt[-6:] = burnt[:, :6] = burnt[:, -6:] = 1.0
    assert flat_paper(burnt) == (1.0, True)
    np.testing.assert_allclose(ink_strength(burnt), full_fit(burnt), atol=1e-3)


def test_binarise_keeps_the_faint_stretches_of_a_hair_thin_stroke():
    rng = np.random.default_rng(2)
    ink = rng.normal(0.0, 0.01, (120, 120)).astype(np.float32)  # the paper: its noise, well under the 0.1 floor
    ink[40, 20:60] = 0.12  # a hair line, just darker than the floor...
    ink[40, 60:100] = 0.08  # ...fading below it further on
    ink[80, 20:100] = 0.08  # as faint, but touching no clearly dark ink: paper texture, not a stroke
    mask = binarise(ink)
    assert mask[40, 20:100].all()
    assert not mask[80].any()
    assert mask.sum() == 80


def test_drop_specks_keeps_broken_strokes():
    mask = np.zeros((200, 200), bool)
    mask[40:160, 90:100] = True  # the main stroke
    mask[30:36, 60:110] = True  # a detached top bar (like a 5's)
    mask[180:182, 10:12] = True  # dust
    mask[5, 150] = True
    kept = drop_specks(mask)
    assert kept[40:160, 90:100].all() and kept[30:36, 60:110].all()
    assert not kept[180:182, 10:12].any() and not kept[5, 150]


def test_crop_fit_and_center_follow_mnist_geometry():
    canvas = np.zeros((300, 300), np.float32)
    canvas[50:250, 100:150] = 1.0  # 200 tall, 50 wide
    crop = crop_to_ink(canvas)
    assert crop.shape == (200, 50)
    box = fit_to_box(crop)
    assert box.shape == (20, 5) and box.max() == pytest.approx(1.0)
    wide = fit_to_box(np.ones((30, 90), np.float32))
    assert wide.shape == (7, 20) or wide.shape == (6, 20) or wide.shape == (10, 20)
    out = center_by_mass(box)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    cy, cx = ndimage.center_of_mass(out.astype(float))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert crop_to_ink(np.zeros((10, 10))).shape == (0, 0)
    assert not center_by_mass(fit_to_box(np.zeros((0, 0)))).any()


def test_center_by_mass_keeps_the_grey_levels_of_a_0_255_digit(test_digits):
    """An MNIST digit's uint8 grey levels were clipped to [0, 1], so every pixel of 1 and up came out full ink."""
    digit = test_digits[0][0][4:24, 4:24]
    assert digit.dtype == np.uint8 and len(np.unique(digit)) > 10
    expected = center_by_mass(digit / 255.0)
    for same_digit in (digit, digit.astype(np.float32), digit.astype(np.int64)):
        np.testing.assert_array_equal(center_by_mass(same_digit), expected)
    assert len(np.unique(expected)) > 10
    mask = digit > 128  # a mask's True, or 1, is full ink, as the predictors read it
    np.testing.assert_array_equal(center_by_mass(mask), center_by_mass(mask.astype(np.uint8)))
    assert set(np.unique(center_by_mass(mask))) == {0, 255}


def test_mnist_digits_pass_through_nearly_unchanged(test_digits):
    images = test_digits[0][:200]
    again = np.array([to_mnist(img) for img in images])
    assert np.abs(again.astype(int) - images).mean() < 2.0
    assert np.mean([similarity(a, b) for a, b in zip(again, images)]) > 0.97


def test_grey_levels_are_kept(test_digits):
    out = to_mnist(encode(1 - big(test_digits[0][8]), "JPEG", quality=80))
    values = np.unique(out)
    assert out.max() == 255 and len(values) > 30  # anti-aliased, not binary


def test_empty_page_gives_no_ink():
    rng = np.random.default_rng(2)
    assert not to_mnist(make_non_digit("blank", rng)).any()
    assert not to_mnist(np.full((50, 80), 255, np.uint8)).any()


@pytest.mark.parametrize("style", STYLES)
def test_photos_resemble_the_digit_they_were_made_from(test_digits, style):
    images, _ = test_digits
    rng = np.random.default_rng(3)
    scores = [similarity(to_mnist(make_photo(images[i], rng, style=style, rotate=0)), images[i]) for i in range(20)]
    assert np.median(scores) > 0.75


def test_segment_digits_reads_rows_left_to_right(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(4)
    right = 0
    for _trial in range(10):
        idx = rng.choice(len(images), int(rng.integers(2, 6)), replace=False)
        digits = segment_digits(make_number_photo(images[idx], rng, rotate=0))
        if len(digits) == len(idx):
            right += all(similarity(d, images[i]) > 0.5 for d, i in zip(digits, idx))
    assert right >= 8


def test_segment_merges_a_broken_five(test_digits):
    images, labels = test_digits
    five = images[np.flatnonzero(labels == 5)[0]].copy()
    rows = np.flatnonzero(five.max(1) > 0)
    five[rows[0] + 4 : rows[0] + 6] = 0  # cut the top bar off the body
    seven = images[np.flatnonzero(labels == 7)[0]]
    row = np.hstack([big(five, 140), np.zeros((140, 40)), big(seven, 140)])
    digits = segment_digits(encode(1 - row, "PNG"))
    assert len(digits) == 2
    assert similarity(digits[1], seven) > 0.8


def test_segment_keeps_two_slanted_ones_apart():
    # "110" leaning right about 0.6 columns a row: the 1s 22 px apart. Their x-ranges overlap by
    # nearly two thirds (one digit, when x-ranges decided); sheared upright by the row's slant, they
    # are 22 px apart.
    row = np.full((140, 260), 255, np.uint8)
    for x in (40, 62):
        cv2.line(row, (x + 30, 20), (x - 30, 120), 0, 5, cv2.LINE_AA)
    cv2.ellipse(row, (170, 70), (22, 50), 30, 0, 360, 0, 5, cv2.LINE_AA)  # tilted 30 degrees
    digits = segment_digits(encode(row / 255.0, "PNG"))
    assert len(digits) == 3


def test_non_digit_generators_make_images():
    rng = np.random.default_rng(5)
    for kind in NON_DIGIT_KINDS:
        assert load_image(make_non_digit(kind, rng)).size[0] > 50


@pytest.mark.parametrize(
    "step, says",
    [
        (lambda: fit_to_box(np.zeros(10)), "fit_to_box takes a 2-d array of grey levels, got shape (10,)"),
        (lambda: fit_to_box(np.ones((5, 5)), box=0), "box must be a whole number of pixels from 1 to 7,071, got 0"),
        # A box or size of 10**6 allocated a terabyte (the process was killed); of 10**30, OverflowError.
        (lambda: fit_to_box(np.ones((5, 5)), box=10**6), "box must be a whole number of pixels from 1 to 7,071"),
        (lambda: fit_to_box(np.ones((5, 5)), box=10**30), "box must be a whole number of pixels from 1 to 7,071"),
        (lambda: center_by_mass(np.ones((5, 5)), size=10**6), "size must be a whole number of pixels from 1 to"),
        (lambda: center_by_mass(np.ones((5, 5)), size=10**30), "size must be a whole number of pixels from 1 to"),
        (lambda: center_by_mass(np.ones((40, 40))), "at most 28 x 28 pixels, got 40 x 40; fit it to a box first"),
        (lambda: center_by_mass(np.full((4, 4), np.nan)), "center_by_mass got NaN or infinite grey levels"),
        # fit_to_box gave back NaN for a NaN (its "max 1" broken), and a box of zeros for an infinity
        (lambda: fit_to_box(np.full((4, 4), np.nan)), "fit_to_box got NaN or infinite grey levels"),
        (lambda: fit_to_box(np.full((4, 4), np.inf)), "fit_to_box got NaN or infinite grey levels"),
    ],
)
def test_the_geometry_steps_say_what_they_take(step, says):
    from mnistlab import InputError

    with pytest.raises(InputError) as info:
        step()
    assert says in str(info.value)


def test_only_the_documented_formats_are_opened_and_scan_bombs_are_refused(tmp_path):
    from mnistlab import ImageTooLargeError

    eps = io.BytesIO()
    Image.new("L", (64, 64), 255).save(eps, "EPS")  # Pillow would hand it to Ghostscript
    with pytest.raises(ImageError, match=r"not an image mnistlab reads \(PNG, JPEG, BMP, TIFF, WebP or GIF\)"):
        predict_image(eps.getvalue())
    jpeg = io.BytesIO()
    Image.new("L", (1000, 1000)).save(jpeg, "JPEG", progressive=True)
    data = jpeg.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    (tmp_path / "scans.jpg").write_bytes(data[:-2] + data[last_scan:-2] * 200 + data[-2:])
    with pytest.raises(ImageTooLargeError, match="is a JPEG of 20[0-9] scans over 1000x1000 pixels"):
        predict_image(tmp_path / "scans.jpg")
    with Image.open(tmp_path / "scans.jpg") as opened:  # opened, not decoded: it was decoded scan by scan
        with pytest.raises(ImageTooLargeError, match="the image is a JPEG of 20[0-9] scans"):
            predict_image(opened)
    with Image.open(io.BytesIO(data)) as opened:
        assert predict_image(opened)["digit"] in range(10)
    assert predict_image(data)["digit"] in range(10)  # the progressive JPEG itself reads


def test_a_jpeg_holding_more_pictures_is_read_and_held_to_a_jpegs_rules():
    """A JPEG holding more pictures (a camera's stereo pair, a phone's HDR gain map), which Pillow opens as format
    MPO: a 24 MP photo was refused as "a MPO image of 6000x4000 pixels, which decodes only at full size; send it
    [...] as a JPEG", and one whose first picture repeats a scan 200 times was decoded scan by scan, unchecked."""
    photo = io.BytesIO()
    more = {"save_all": True, "append_images": [Image.new("L", (60, 40))]}
    Image.new("L", (6000, 4000), 255).save(photo, "MPO", quality=30, **more)
    with Image.open(photo) as opened:
        assert opened.format == "MPO"
    assert predict_image(photo.getvalue())["confident"] is False  # a blank page, read at 1/8 scale as a JPEG
    scans = io.BytesIO()
    Image.new("L", (1000, 1000)).save(scans, "MPO", progressive=True, **more)
    data = scans.getvalue()
    first = data[: data.index(b"\xff\xd8", 2)]  # the first picture, up to the second's start-of-image
    last_scan = first.rindex(b"\xff\xda")
    bomb = first[:-2] + first[last_scan:-2] * 200 + data[len(first) - 2 :]
    with pytest.raises(ImageTooLargeError, match="is a JPEG of 2[0-9][0-9] scans over 1000x1000 pixels"):
        predict_image(bomb)
    with (
        Image.open(io.BytesIO(bomb)) as opened,
        pytest.raises(ImageTooLargeError, match="is a JPEG of 2[0-9][0-9] scans"),
    ):
        predict_image(opened)


def test_image_arrays_are_held_to_the_photos_rules():
    from mnistlab import ImageTooLargeError

    with pytest.raises(ImageError, match="holds negative values"):
        predict_image(np.full((28, 28), -5, np.int32))
    with pytest.raises(ImageTooLargeError, match="is a strip of 2000x10 pixels"):
        predict_image(np.zeros((10, 2000)))
    # A BMP declaring 30000 x 30000 pixels, refused by Pillow's own limit on opening: too large (413), as others.
    bmp = (
        b"BM"
        + struct.pack("<IHHI", 0, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 0, 0, 0, 0)
    )
    with pytest.raises(ImageTooLargeError, match="declares far too many pixels to decode safely"):
        predict_image(bmp + bytes(1024))
    # A row of 50 digits, tightly cropped already: "crop it to the digits" alone said nothing to do.
    with pytest.raises(ImageTooLargeError, match="cut a long number into parts of at most 15 digits"):
        read_number(np.full((175, 6146), 255, np.uint8))


def test_an_image_made_in_memory_is_held_to_the_rules_of_an_array():
    """A PIL image made in memory (``Image.new``, ``Image.fromarray``) was let through as the strip that its array,
    or its file, is refused as: a 1 x 40,000,000 one took 2 s and 380 MB more memory to answer "no ink found"."""
    with pytest.raises(ImageTooLargeError, match="the image is a strip of 2000x10 pixels"):
        predict_image(Image.new("L", (2000, 10), 255))
    with pytest.raises(ImageTooLargeError, match="cut a long number into parts of at most 15 digits"):
        read_number(Image.fromarray(np.full((175, 6146), 255, np.uint8)))
    assert predict_image(Image.new("L", (8000, 6000), 255))["confident"] is False  # 48 MP: an array's limit


def test_to_mnists_looks_given_a_string_are_refused_not_taken_as_true(test_digits):
    """to_mnist(image, faint="no") took the second look it was told not to take: "no" is truthy."""
    from mnistlab.errors import InputError

    digit = test_digits[0][0]
    for flags in ({"faint": "no"}, {"closer": "no"}, {"faint": 1}):
        with pytest.raises(InputError, match=r"^faint and closer must each be True or False, got "):
            to_mnist(digit, **flags)
    np.testing.assert_array_equal(to_mnist(digit, faint=np.bool_(False)), to_mnist(digit))


def test_pixel_values_no_image_takes_are_refused_as_array_or_pil_image(test_digits):
    """A float array of -255..0 (or -1..1), or a PIL image of mode I or F holding negative values or NaN, was
    clipped to a blank page and answered "no digit-sized ink found; crop a small digit" as a photo would be;
    an integer array of the same values was refused. Refused alike now; a resampled image's undershoot reads. A digit
    normalised as PyTorch's MNIST example does was read as 0-255 pixels: "no ink found"; now it is said to be
    normalised."""
    digit = test_digits[0][0].astype(np.float32)
    refused = {
        "holds values down to -255, far below 0": -digit,
        "holds values down to -1, far below 0": digit / 127.5 - 1,  # normalised to -1..1
        # As PyTorch's MNIST example normalises: paper -0.4242, ink 2.8215, read as 0-255 it was "no ink found".
        "looks normalised: most of its pixels are -0.4242, below 0 .paper.; pass the pixels as they were before "
        "normalising": (digit / 255 - 0.1307) / 0.3081,
        "The image holds negative values": Image.fromarray(-digit.astype(np.int32)),
        "The image holds values down to -1, far below 0": Image.fromarray(-digit / 255),
        "The image contains NaN": Image.fromarray(np.where(digit > 0, np.nan, 0).astype(np.float32)),
    }
    for says, image in refused.items():
        with pytest.raises(ImageError, match=says):
            predict_image(image)
    undershoot = digit / 255 - 0.1 * (digit == 0)  # background at -0.1, as bicubic resampling leaves it
    assert predict_image(undershoot)["digit"] == predict_image(digit)["digit"] == test_digits[1][0]
    assert predict_image(Image.fromarray(digit))["digit"] == test_digits[1][0]
