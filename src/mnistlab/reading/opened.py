"""Images the caller opened with Pillow and has not decoded, read as their files are."""

from __future__ import annotations

from PIL import Image

from mnistlab.reading.admission import JPEG_FORMATS, MAX_IMAGE_FILE_BYTES, file_too_large, undecodable

__all__ = ["undecoded_jpeg"]


def undecoded_jpeg(image: Image.Image) -> bytes | None:
    """The file of a JPEG the caller opened and has not decoded (at its first picture), None for any other image.
    Decoded whole and then reduced, such a photo read otherwise (another 28x28 image, another probability) than
    its file, its bytes or the web API, whose decoder reduces it."""
    fp = getattr(image, "fp", None)
    if image.format not in JPEG_FORMATS or not getattr(image, "tile", None) or fp is None or image.tell():
        return None
    try:
        position = fp.tell()
        fp.seek(0)  # Pillow reads an image from its file's start
        data = fp.read(MAX_IMAGE_FILE_BYTES + 1)
        fp.seek(position)
    except (OSError, ValueError) as exc:
        raise undecodable("the image", exc) from None
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise file_too_large("the image", None)
    return data
