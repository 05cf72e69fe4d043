"""The draw-a-digit page and its JSON API, behind ``mnistlab serve``.

One FastAPI application serves the page (``static/``, no CDN), the API under
``/api`` and offline OpenAPI docs at ``/docs``. Every prediction goes through
the same ``predict_image`` / ``read_number`` pipeline as ``mnistlab predict``.

Limits are enforced before any work is done: the request body is counted
while it arrives (413 past ``max_upload_bytes``), an image's header is read
before its pixels (413 past ``max_pixels``), and inference runs in worker
threads, at most one per CPU at a time, so a slow request never blocks the
event loop and fifty uploads never decode fifty photos at once.
"""

from __future__ import annotations

import base64
import io
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import ImageError, InputError, MnistlabError, ModelFileError

__all__ = ["create_app", "serve", "DEFAULT_MAX_UPLOAD_BYTES"]

# A phone photo is 2-12 MB; anything much larger is not a picture of a digit.
DEFAULT_MAX_UPLOAD_BYTES = 16 * 2**20
STATIC_DIR = Path(__file__).with_name("static")
# An over-limit body up to this size is read and dropped so the client can read its 413;
# past it the connection is closed without reading (the client may see a reset instead).
_DRAIN_BYTES = 64 * 2**20

# The page may only load what this server sends: no CDN, no inline script.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}


class PixelsIn(BaseModel):
    """A digit already in MNIST form: 784 grey values row by row, white ink on black, 0-255.

    Used as is, like a .npy file given to ``mnistlab predict`` (values that all
    lie within 0-1 are taken as floats and scaled to 0-255).
    """

    model_config = ConfigDict(extra="forbid")
    pixels: Annotated[list[Annotated[float, Field(ge=0, le=255, allow_inf_nan=False)]], Field(min_length=784, max_length=784)]
    top: int | None = Field(None, ge=1, le=10, description="How many ranked digits to return (overrides ?top=).")


class DigitOut(BaseModel):
    """One prediction, as ``mnistlab predict --json`` prints it, plus the image the model saw."""

    file: str | None
    digit: int
    probability: float
    top: list[tuple[int, float]]
    confident: bool
    reason: str | None
    mnist_image_png: str = Field(description="The 28x28 image the model saw, as a data:image/png;base64 URL.")


class NumberOut(BaseModel):
    """A row of digits read left to right, as ``mnistlab predict --number --json`` prints it."""

    file: str | None
    number: str
    digits: list[DigitOut]
    confident: bool


class Problem(BaseModel):
    detail: str


_IMAGE_BODY = {"multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                  "properties": {"file": {"type": "string", "format": "binary"}}}}}
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    **_IMAGE_BODY, "application/json": {"schema": PixelsIn.model_json_schema()}}}}
_PROBLEMS = {code: {"model": Problem} for code in (413, 415, 422)}


class _BodyTooLarge(Exception):
    pass


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    The declared Content-Length is checked before the application runs; the
    bytes are also counted as they arrive, so a chunked upload without a
    length, or one that lies about it, is cut off at the same limit. Before
    answering, the rest of the body (up to ``_DRAIN_BYTES``) is read and
    dropped: a client still sending would otherwise get a connection reset
    instead of the 413 and its message.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            more = declared.isdigit() and int(declared) <= _DRAIN_BYTES
            return await self._refuse(receive, send, more)
        received = 0
        more_body = True
        started = False

        async def counting_receive():
            nonlocal received, more_body
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = message.get("more_body", False)
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(receive, send, more_body)

    async def _refuse(self, receive, send, more_body: bool) -> None:
        drained = 0
        while more_body and drained <= _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            more_body = message.get("more_body", False)
        detail = f"The upload is larger than {self.max_bytes / 2**20:g} MiB; send a smaller or more compressed image."
        await _send_problem(send, 413, detail)


async def _send_problem(send, status: int, detail: str) -> None:
    body = JSONResponse({"detail": detail}).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _ImageTooLarge(ImageError):
    """Refused from its header: more pixels than the server decodes (413)."""


class _NotAnImage(ImageError):
    """Not an image at all, or an empty upload (415)."""


def _status_for(exc: MnistlabError) -> int:
    if isinstance(exc, _ImageTooLarge):
        return 413
    if isinstance(exc, _NotAnImage):
        return 415
    if isinstance(exc, ModelFileError):
        return 503  # the server has no usable model: not the client's fault
    if isinstance(exc, InputError):
        return 422
    return 400


def _check_image_header(data: bytes, max_pixels: int) -> None:
    """Refuse non-images and pixel bombs from the header alone, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise _NotAnImage("The upload is empty; send a PNG, JPEG, BMP, TIFF or WebP image.")
    try:
        # Image.open reads only the header; DecompressionBombError fires past 2x Pillow's own limit.
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise _ImageTooLarge(f"The image has more than {max_pixels:,} pixels; send a smaller image.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise _NotAnImage("The upload is not an image this server can read; send a PNG, JPEG, BMP, TIFF or WebP image.") from None
    if width * height > max_pixels:
        raise _ImageTooLarge(
            f"The image is {width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,}; "
            "send a smaller image."
        )


def _png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _with_images(result: dict, file: str | None) -> dict:
    """``result`` as ``mnistlab predict --json`` prints it, plus each 28x28 image the model saw as a PNG."""
    from ._predict import to_json

    out = to_json(result, file)
    if "digits" in result:
        for shown, seen in zip(out["digits"], result["digits"]):
            shown["mnist_image_png"] = _png_data_url(seen["mnist_image"])
    else:
        out["mnist_image_png"] = _png_data_url(result["mnist_image"])
    return out


def _one_sentence(exc: ValidationError | RequestValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    if err.get("type") == "json_invalid":
        return "The request body is not valid JSON; send {\"pixels\": [784 numbers from 0 to 255]}."
    if where.startswith("pixels") and err.get("type") in ("too_short", "too_long"):
        got = len(err.get("input", ()))
        return f"pixels must hold 784 values (28 x 28, row by row), got {got}."
    return f"Invalid request: {where or 'body'}: {err.get('msg', 'invalid value')}."


def create_app(
    model=None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int | None = None,
) -> FastAPI:
    """Build the application.

    ``model`` is a fitted estimator with ``predict_proba``, a model directory,
    a ``Predictor`` from ``load_predictor``, or None for the best model saved
    on this machine; it is loaded (and its confidence calibrated) once, when
    the application starts. Request bodies over ``max_upload_bytes`` get 413,
    and so do images whose header declares more than ``max_pixels`` (default:
    the photo reader's own limit, ``_handwriting.MAX_PIXELS``).
    """
    from . import _handwriting, _predict

    if max_pixels is None:
        max_pixels = _handwriting.MAX_PIXELS
    if max_upload_bytes < 1 or max_pixels < 1:
        raise InputError(f"Limits must be positive, got max_upload_bytes={max_upload_bytes}, max_pixels={max_pixels}.")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.predictor = await anyio.to_thread.run_sync(_predict.load_predictor, model)
        # One inference per CPU at a time bounds memory as well as CPU (each photo decodes to tens of MB).
        app.state.limiter = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        yield

    from . import __version__

    app = FastAPIOffline(
        title="mnistlab",
        version=__version__,
        description="Draw or photograph a digit; the model says which it is and whether it is sure.",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, max_bytes=max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(MnistlabError)
    async def _user_error(request: Request, exc: MnistlabError):
        return JSONResponse({"detail": str(exc)}, status_code=_status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_sentence(exc)}, status_code=422)

    async def run(request: Request, fn, *args):
        return await anyio.to_thread.run_sync(fn, *args, limiter=request.app.state.limiter)

    async def read_upload(request: Request) -> tuple[bytes, str | None]:
        """The bytes and name of the multipart field ``file``, checked to be a plausible image."""
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise _NotAnImage(
                "Expected a multipart/form-data upload with an image in the field 'file', "
                f"got {content_type or 'no content type'}."
            )
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InputError("The form has no file in the field 'file'; attach the image as file=@photo.png.")
        data = await upload.read()
        await run(request, _check_image_header, data, max_pixels)
        return data, upload.filename

    def predict_bytes(data: bytes, name: str | None, predictor, top: int) -> dict:
        return _with_images(_predict.predict_image(data, predictor, top=top), name)

    def predict_pixels(pixels: PixelsIn, predictor, top: int) -> dict:
        return _with_images(_predict.predict_array(np.asarray(pixels.pixels), predictor, top=top), None)

    def read_number_bytes(data: bytes, name: str | None, predictor) -> dict:
        return _with_images(_predict.read_number(data, predictor), name)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    @app.get("/api/health", summary="Is the server up, and with which model")
    async def health(request: Request):
        return {"status": "ok", "version": __version__, "model": request.app.state.predictor.card.get("recipe")}

    @app.get("/api/model", summary="The model card of the loaded model (model.json)")
    async def model_card(request: Request):
        return request.app.state.predictor.card

    @app.post("/api/predict", summary="Which digit is this image?", response_model=DigitOut,
              responses=_PROBLEMS, openapi_extra=_PREDICT_BODY)
    async def predict(request: Request, top: int = Query(3, ge=1, le=10, description="How many ranked digits to return.")):
        """Send an image as multipart field ``file`` (any photo, scan or canvas export),
        or JSON ``{"pixels": [784 values 0-255]}`` for a digit already in MNIST form."""
        predictor = request.app.state.predictor
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                pixels = PixelsIn.model_validate_json(await request.body())
            except ValidationError as exc:
                return JSONResponse({"detail": _one_sentence(exc)}, status_code=422)
            return JSONResponse(await run(request, predict_pixels, pixels, predictor, pixels.top or top))
        data, name = await read_upload(request)
        return JSONResponse(await run(request, predict_bytes, data, name, predictor, top))

    @app.post("/api/read-number", summary="Read a row of handwritten digits", response_model=NumberOut,
              responses=_PROBLEMS, openapi_extra={"requestBody": {"required": True, "content": _IMAGE_BODY}})
    async def read_number(request: Request):
        """Send an image of a short number (a house number, a code) as multipart field ``file``."""
        data, name = await read_upload(request)
        return JSONResponse(await run(request, read_number_bytes, data, name, request.app.state.predictor))

    return app


def serve(model_dir=None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the model (failing fast with a ModelFileError), then run the app under uvicorn until Ctrl+C."""
    import uvicorn

    from ._predict import load_predictor

    uvicorn.run(create_app(load_predictor(model_dir)), host=host, port=port, log_level="info")
