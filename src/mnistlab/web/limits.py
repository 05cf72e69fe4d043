"""Limits that stop a request before it costs memory or time.

Checks that run before any pixel is decoded: ``BodyLimit`` refuses a body
whose declared Content-Length is over ``max_bytes`` at once (413, nothing
read) and counts the bytes of the others as they arrive; ``BodyPace``
answers a body that stalls with 408 where the server in front does not (Ray
Serve's proxy); ``read_capped`` holds a JSON body to its own, much smaller
limit; ``check_image_header`` reads an upload's image header and refuses
non-images (415) and images with more than ``max_pixels`` pixels (413).
"""

from __future__ import annotations

import asyncio
import functools
import io
import warnings
from collections.abc import Awaitable, Callable

from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab.errors import BodyTooLargeError, ImageError, ImageTooLargeError, NotAnImageError
from mnistlab.reading.admission import (
    FORMAT_NAMES,
    IMAGE_FORMATS,
    JPEG_FORMATS,
    check_decodable,
    check_jpeg_scans,
    check_parts,
    format_by_signature,
    unidentified,
)
from mnistlab.web.protocol import DISCARD_BYTES, ConnectionLimits, stalled_body_detail

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "MAX_JSON_BYTES", "BodyLimit", "BodyPace", "read_capped", "check_image_header"]

# A phone photo is 2-12 MB; anything much larger is not a picture of a digit.
DEFAULT_MAX_UPLOAD_BYTES = 16 * 2**20
# 784 pixel values as JSON take 4 KB as integers, under 20 KB as full-precision floats.
MAX_JSON_BYTES = 64 * 2**10


class _BodyTooLarge(Exception):
    """Raised from the application's ``receive`` once the body passes the limit."""


class _BodyStalled(Exception):
    """Raised from the application's ``receive`` once the body is late (``BodyPace``)."""


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    A declared Content-Length over the limit is answered before the body is
    read at all. The bytes of other bodies are counted as they arrive, so a
    chunked upload without a length is cut off at the same limit. What is
    left of a refused body is not read here: the server reads and drops it
    (bounded in time and size, ``protocol``), so the client sees the 413 and
    not a reset; one declared past ``DISCARD_BYTES`` is not worth reading,
    and its connection is closed after the answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send, close=int(declared) > DISCARD_BYTES)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        refuse = functools.partial(self._refuse, scope, receive, send, close=False)  # a 413, unless too late
        await _run_or_refuse(self.app, scope, counting_receive, send, _BodyTooLarge, refuse)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, close: bool) -> None:
        detail = (
            f"The request body is larger than {self.max_bytes / 2**20:g} MiB; send a smaller or more compressed "
            'image (or, as JSON, {"pixels": [784 values]}, which takes under 20 KiB).'
        )
        headers = {"connection": "close"} if close else None
        response = JSONResponse({"detail": detail}, status_code=BodyTooLargeError.http_status, headers=headers)
        await response(scope, receive, send)


class BodyPace:
    """ASGI middleware for servers with no body timeouts of their own (Ray Serve's proxy): a request body may
    pause at most ``limits.read_timeout`` seconds and must average ``limits.min_upload_rate`` bytes/s after its
    first ``read_timeout`` seconds, as ``protocol`` holds it for the plain server; else 408 and close.

    Behind Serve, a stalled upload held one of its replica's few request slots for as long as its client
    kept the connection open, and a handful of them stopped the deployment answering anyone.
    """

    def __init__(self, app: ASGIApp, limits: ConnectionLimits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        timeout, rate = self.limits.read_timeout, self.limits.min_upload_rate
        since = last = loop.time()
        received, complete = 0, False

        async def paced_receive() -> Message:
            nonlocal last, received, complete
            if complete:  # the body is in: what comes now is a disconnect, awaited as long as the app likes
                return await receive()
            deadline = min(last + timeout, since + timeout + received / rate)
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise _BodyStalled from None
            if message["type"] == "http.request":
                received, last = received + len(message.get("body", b"")), loop.time()
                complete = not message.get("more_body", False)
            return message

        refuse = functools.partial(self._refuse, scope, receive, send)  # a 408, unless too late
        await _run_or_refuse(self.app, scope, paced_receive, send, _BodyStalled, refuse)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = stalled_body_detail(self.limits)
        await JSONResponse({"detail": detail}, status_code=408, headers={"connection": "close"})(scope, receive, send)


async def _run_or_refuse(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    refusal: type[Exception],
    refuse: Callable[[], Awaitable[None]],
) -> None:
    """``app`` reading its body through ``receive``; where that raises ``refusal`` before the app's answer
    began, ``refuse()`` answers instead; after, the error goes on and the server drops the connection (too late
    for another status)."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except refusal:
        if started:
            raise
        await refuse()


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with ``BodyTooLargeError`` as soon as it is known to pass ``limit`` bytes."""
    too_large = BodyTooLargeError(
        f"A JSON body may hold at most {limit // 1024} KiB (784 pixel values take under 20 KiB); "
        'send {"pixels": [784 numbers from 0 to 255]}.'
    )
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def check_image_header(data: bytes, max_pixels: int) -> None:
    """Refuse non-images and pixel bombs from the header alone, before any pixel is decoded."""
    if not data:
        raise NotAnImageError(f"The upload is empty; send a {FORMAT_NAMES} image.")
    # Before Image.open, which reads every chunk, segment or tile list of a header in Python (a 12 MB PNG of a
    # million empty chunks took 7.9 s to answer in `predict_image` before its chunks were counted).
    check_parts(io.BytesIO(data), "The image")
    try:
        # Image.open reads only the header; DecompressionBombError fires past 2x Pillow's own limit. What Pillow
        # warns of (EXIF cut short, a broken APNG chunk) stays out of the server's log, as ``load_image`` keeps it:
        # two lines of Pillow's source on each such upload, which any client could send.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
                width, height = im.size
                image_format = im.format
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"The image has more than {max_pixels:,} pixels; send a smaller image.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        if format_by_signature(io.BytesIO(data)) is not None:  # a format read that cannot be decoded: say which
            raise ImageError(unidentified("The upload", io.BytesIO(data))) from None
        raise NotAnImageError(
            f"The upload is not a {FORMAT_NAMES} image, the formats this server reads; send one of those."
        ) from None
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,}; "
            "send a smaller image."
        )
    check_decodable((width, height), image_format, "The image")  # strips, and giants that decode only whole
    if image_format in JPEG_FORMATS:  # MPO: a JPEG holding more pictures, read as its first
        check_jpeg_scans(data, (width, height), "The image")  # a progressive JPEG's repeated scans
