"""Limits that stop a request before it costs memory or time.

Two checks run before any pixel is decoded: ``BodyLimit`` counts the request
body while it arrives and answers 413 past ``max_bytes``, and
``check_image_header`` reads an upload's image header and refuses non-images
(415) and images with more than ``max_pixels`` pixels (413).
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab.errors import ImageTooLargeError, NotAnImageError

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "BodyLimit", "check_image_header"]

# A phone photo is 2-12 MB; anything much larger is not a picture of a digit.
DEFAULT_MAX_UPLOAD_BYTES = 16 * 2**20
# An over-limit body up to this size is read and dropped so the client can read its 413;
# past it the connection is closed without reading (the client may see a reset instead).
DRAIN_BYTES = 64 * 2**20


class _BodyTooLarge(Exception):
    """Raised from the application's ``receive`` once the body passes the limit."""


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    The declared Content-Length is checked before the application runs; the
    bytes are also counted as they arrive, so a chunked upload without a
    length, or one that lies about it, is cut off at the same limit. Before
    answering, the rest of the body (up to ``DRAIN_BYTES``) is read and
    dropped: a client still sending would otherwise get a connection reset
    instead of the 413 and its message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            more = declared.isdigit() and int(declared) <= DRAIN_BYTES
            return await self._refuse(scope, receive, send, more)
        received = 0
        more_body = True
        started = False

        async def counting_receive() -> Message:
            nonlocal received, more_body
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = message.get("more_body", False)
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:  # too late for a 413: let the server drop the connection
                raise
            await self._refuse(scope, receive, send, more_body)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, more_body: bool) -> None:
        """Drain what is left of the body (within ``DRAIN_BYTES``), then answer 413 and close."""
        drained = 0
        while more_body and drained <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            more_body = message.get("more_body", False)
        detail = f"The upload is larger than {self.max_bytes / 2**20:g} MiB; send a smaller or more compressed image."
        response = JSONResponse(
            {"detail": detail}, status_code=ImageTooLargeError.http_status, headers={"connection": "close"}
        )
        await response(scope, receive, send)


def check_image_header(data: bytes, max_pixels: int) -> None:
    """Refuse non-images and pixel bombs from the header alone, before any pixel is decoded."""
    if not data:
        raise NotAnImageError("The upload is empty; send a PNG, JPEG, BMP, TIFF or WebP image.")
    try:
        # Image.open reads only the header; DecompressionBombError fires past 2x Pillow's own limit.
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"The image has more than {max_pixels:,} pixels; send a smaller image.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise NotAnImageError(
            "The upload is not an image this server can read; send a PNG, JPEG, BMP, TIFF or WebP image."
        ) from None
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,}; "
            "send a smaller image."
        )
