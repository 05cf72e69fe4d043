"""The page and the JSON API, as one ``APIRouter`` that ``create_app`` includes.

Routes reach the loaded model through the ``served`` dependency (state the
app's lifespan sets up once) and answer with plain dicts that FastAPI
validates against the models in ``schemas``. Every prediction goes through the
same steps as ``mnistlab predict`` (``to_mnist``, ``Predictor.describe``, a
doubted photo's ``look_again``, ``read_number``): reading and decoding run in
a few reading threads, so a slow photo never blocks the event loop and only a
few photos are in memory, decoded, at once; the 28x28 images of concurrent
requests are then answered together, one ``describe`` call per batch
(``trust.batching``).

``/api/health`` answers as long as the process runs; ``/api/ready`` only once
the model is loaded and has answered a test image (503 before), for a load
balancer or a Kubernetes readiness probe. Requests for a prediction that
arrive while the model loads wait for it, up to ``LOAD_WAIT`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from mnistlab._text import json_safe
from mnistlab._version import __version__
from mnistlab.data.pixels import as_digit
from mnistlab.errors import InputError, NotAnImageError, NotReadyError
from mnistlab.reading.decode import encode_png
from mnistlab.reading.steps import read_digit
from mnistlab.trust import predict as answering
from mnistlab.trust.batching import SHUTTING_DOWN, BatchedPredictor
from mnistlab.trust.thresholds import NO_INK
from mnistlab.web.limits import MAX_JSON_BYTES, check_image_header, read_capped
from mnistlab.web.schemas import (
    NOT_READY,
    PROBLEMS,
    DigitOut,
    Health,
    ImageUpload,
    ModelCard,
    NumberOut,
    PixelsIn,
    named_twice,
    request_body,
)

__all__ = ["router", "Served", "served", "STATIC_DIR", "PAGES_DIR", "LOAD_WAIT", "LOADING_RETRY_AFTER"]

# Files served as they are, under /static/.
STATIC_DIR = Path(__file__).with_name("static")
# The pages, served by their routes only (/ and /docs): index.html is a template, filled in by ``page``, and
# both pages' URLs are relative to the site's root, so served from /static/ neither would work.
PAGES_DIR = Path(__file__).with_name("pages")

UPLOAD_BODY = request_body(multipart=ImageUpload)
PREDICT_BODY = request_body(multipart=ImageUpload, json=PixelsIn)

T = TypeVar("T")

# Seconds a prediction request waits for a model still loading before it is answered 503 ("still loading").
# The page gives a request this long plus its own answering time (static/app.js), and learns it from the page
# itself (``page`` writes it in), so that its user sees the server's 503 and not "the server did not answer";
# at 60 s the page gave up after 30 s while the server held the request (and a connection) 30 s more. 20 s:
# a model saved without its probability cut is calibrated as it loads, which takes seconds.
LOAD_WAIT = 20.0
# Seconds a 503 "still loading" tells its client to wait before asking again (Retry-After): a model loads in
# seconds, and 2 s is what the busy server's 503 says (``protocol``). A model that failed to load, or an app whose
# lifespan never ran, says no Retry-After: the load is tried once, when the app starts, so asking again gets the
# same 503 until someone fixes the model and restarts the server; an invitation to retry would only bring
# clients (the page sends the same request again, three times) back for nothing.
LOADING_RETRY_AFTER = 2
# Where pages/index.html has the page's copy of LOAD_WAIT, in seconds.
LOAD_WAIT_MARK = "$LOAD_WAIT"
# An app mounted in another one gets no lifespan of its own: its model is never loaded.
NOT_STARTED = (
    "The model was never loaded: this application's lifespan did not run (an app mounted in another gets none of "
    "its own); run it from the parent app's lifespan, as the README's 'Web page and API' shows."
)


@dataclass(frozen=True)
class Served:
    """What every request shares, set up once when the app starts."""

    predictor: BatchedPredictor  # its describe batches concurrent requests' images
    # The threads that read and decode uploads: one per CPU, at most ``max_decodes``; they bound the CPU that
    # reading takes and the photos in memory, decoded, at once (the uploads waiting for one hold only their bytes).
    readers: ThreadPoolExecutor
    max_pixels: int  # uploads whose header declares more pixels are refused undecoded

    async def run_on_photo(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a reading thread: ``fn`` reads and decodes an upload."""
        return await asyncio.wrap_future(self._read(fn, *args))

    def _read(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``fn(*args)`` handed to a reading thread; once the app has stopped (a Ray Serve replica's lifespan may
        end with requests still in flight), 503 in one sentence, not a 500."""
        try:
            return self.readers.submit(fn, *args)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            raise NotReadyError(SHUTTING_DOWN, 2) from None

    async def read_and_describe(self, upload: UploadFile, top: int) -> tuple[dict[str, Any], bool]:
        """The first reading of an uploaded digit: its answer, and whether the upload is a clean drawing.

        The reading thread hands the 28x28 image straight to the micro-batcher,
        whose one callback a batch settles this request with the others: the
        event loop wakes once, for the answer, and not also between reading and
        batching (measured: about 0.3 server CPU-ms less a canvas, some 10% more
        canvases a second; benchmarks/RESULTS.md). A request cancelled meanwhile
        leaves the thread to finish, its answer dropped; one cancelled before its reading began (its client left)
        is never read.
        """
        assert self.predictor.batcher is not None
        batcher, loop = self.predictor.batcher, asyncio.get_running_loop()
        answered: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        drawing: list[bool] = []

        def read() -> None:
            try:
                image, flat = _mnist_of_upload(upload, self)
                drawing.append(flat)
                batcher.submit(image[None], top, waiter=answered)
            except BaseException as exc:  # this request's error alone, raised where it awaits its answer
                with suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(_fail, answered, exc)

        job = self._read(read)
        try:
            return (await answered)[0], drawing[0]
        except asyncio.CancelledError:
            job.cancel()  # still waiting for a reading thread: it never gets one
            raise

    async def describe(self, image: np.ndarray, top: int) -> dict[str, Any]:
        """The answer for one (28, 28) image, from the next batch (the event loop waits, no thread does)."""
        assert self.predictor.batcher is not None
        return (await self.predictor.batcher.answer(image[None], top))[0]


def _fail(answered: asyncio.Future, exc: BaseException) -> None:
    if not answered.done():  # not cancelled meanwhile
        answered.set_exception(exc)


async def served(request: Request) -> Served:
    """The dependency that hands a route the app's ``Served`` state, once the model is loaded."""
    state = request.app.state
    if not hasattr(state, "loaded"):
        raise _not_ready(state)
    if state.served is None:
        with anyio.move_on_after(LOAD_WAIT):
            await state.loaded.wait()
    if state.served is None:
        raise _not_ready(state)
    return cast(Served, state.served)


def _not_ready(state) -> NotReadyError:
    """Why the app's model cannot answer yet: it failed to load (and why), it is still loading (the only one
    that passes: Retry-After, ``LOADING_RETRY_AFTER``), or the app's lifespan, which loads it, never ran."""
    if not hasattr(state, "loaded"):
        return NotReadyError(NOT_STARTED)
    if state.load_error:
        return NotReadyError(state.load_error)
    return NotReadyError("The model is still loading; try again in a few seconds.", LOADING_RETRY_AFTER)


def _status(state: Served | None) -> dict[str, Any]:
    """``Health``: the version, the model's recipe (null before it is loaded) and the worker process."""
    card = state.predictor.card if state else {}
    model = card.get("recipe") or card.get("name")  # a trained model's recipe; the shipped reader's name
    return {"status": "ok", "version": __version__, "model": model, "worker": os.getpid()}


State = Annotated[Served, Depends(served)]
Top = Annotated[int, Query(ge=1, le=10, description="How many ranked digits to return.")]

# Routes are matched in the order they are declared, a few microseconds each: the prediction routes, which
# carry the load, come first (the server's JSON answer costs about a CPU-millisecond).
router = APIRouter()


@router.post(
    "/api/predict",
    summary="Which digit is this image?",
    response_model=DigitOut,
    responses=PROBLEMS,
    openapi_extra=PREDICT_BODY,
)
async def predict(request: Request, top: Top = 3) -> dict[str, Any]:
    """Send an image as multipart field ``file`` (any photo, scan or canvas export),
    or JSON ``{"pixels": [784 values 0-255]}`` for a digit already in MNIST form."""
    # ``served`` awaited here, not declared as a dependency: FastAPI's solving of a sub-dependency took about 4%
    # of the app's CPU for a JSON answer (in-process, medians of 20 runs, three pairs: 1.09 -> 1.05 CPU-ms; served
    # end to end, within the hour-to-hour spread; benchmarks/RESULTS.md).
    state = await served(request)
    if _media_type(request) == "application/json":
        pixels = await _read_pixels(request)
        digit = as_digit(np.asarray(pixels.pixels))  # 784 checked values: no thread needed
        return _with_images(await state.describe(digit, pixels.top or top), None)
    async with _upload(request) as upload:
        answer, drawing = await state.read_and_describe(upload, top)
        if not (answer["confident"] or drawing):  # as ``predict_image``: a doubted photo gets a second look
            answer = await state.run_on_photo(_second_look_at_upload, upload, state, answer, top)
        if answer["reason"] == NO_INK:  # as ``predict_image``: specks, or a digit too small to read, say so
            answer = await state.run_on_photo(_why_blank_upload, upload, state, answer)
        return _with_images(answer, upload.filename)


@router.post(
    "/api/read-number",
    summary="Read a row of handwritten digits",
    response_model=NumberOut,
    responses=PROBLEMS,
    openapi_extra=UPLOAD_BODY,
)
async def read_number(request: Request, state: State, top: Top = 3) -> dict[str, Any]:
    """Send an image of a short number (a house number, a code) as multipart field ``file``."""
    async with _upload(request) as upload:
        return await state.run_on_photo(_read_number_upload, upload, state, top)


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    """The draw-a-digit page, told how long the server holds a request while its model loads (LOAD_WAIT)."""
    html = await anyio.Path(PAGES_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace(LOAD_WAIT_MARK, f"{LOAD_WAIT:g}"))


@router.get("/docs", include_in_schema=False)
async def docs() -> FileResponse:
    """Swagger UI from the fastapi-offline wheel, started by static/docs.js: no inline script, no CDN."""
    return FileResponse(PAGES_DIR / "docs.html")


@router.get("/api/health", summary="Is the server up, and with which model", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    """Alive: answered while the process runs, before the model is loaded too (``model`` is null then)."""
    return _status(getattr(request.app.state, "served", None))


@router.get("/api/ready", summary="Can the server answer predictions now", response_model=Health, responses=NOT_READY)
async def ready(request: Request) -> dict[str, Any]:
    """200 once the model is loaded, verified and has answered a test image; 503 before, or if it failed."""
    if getattr(request.app.state, "served", None) is None:
        raise _not_ready(request.app.state)
    return _status(request.app.state.served)


@router.get(
    "/api/model",
    summary="The card of the loaded model (model.json)",
    response_model=ModelCard,
    responses=NOT_READY,
    response_model_exclude_unset=True,  # the card's own keys, none added
)
async def model_card(state: State) -> dict[str, Any]:
    return json_safe(state.predictor.card)  # a data_dir named b"r\\xfe" as r\\xfe: UTF-8 cannot encode it (a 500)


def _media_type(request: Request) -> str:
    """The request's media type, without parameters, in lower case (media types ignore case)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_pixels(request: Request) -> PixelsIn:
    """The JSON body as ``PixelsIn``; a bad one goes to the same 422 handler as FastAPI's own checks."""
    _refuse_coded(request)
    body = await read_capped(request, MAX_JSON_BYTES)
    try:
        pixels = PixelsIn.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0].get("type") == "json_invalid" and (why := _not_utf8(body)):
            raise InputError(why) from None
        raise RequestValidationError(errors) from None
    if why := named_twice(body, pixels):  # the parser keeps a repeated key's last value, without a word
        raise InputError(why)
    return pixels


def _not_utf8(body: bytes) -> str | None:
    """Why a body that is not valid JSON may be JSON all the same, sent as it must not be (RFC 8259: UTF-8, no
    byte-order mark); None if it is not that."""
    if body.startswith(b"\xef\xbb\xbf"):
        return (
            "The request body starts with a byte-order mark, which JSON sent over a network must not carry; "
            "send the JSON as UTF-8 without one."
        )
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:2]:  # JSON's first character is ASCII
        return "The request body is UTF-16 (or UTF-32) text; send the JSON as UTF-8."
    return None


def _refuse_coded(request: Request) -> None:
    """A body in a content coding (gzip, br) is refused as one (415, as RFC 9110 says), not parsed as it came and
    called invalid JSON or a broken form. One header looked up: nothing more on the prediction routes' path."""
    coding = request.headers.get("content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        raise HTTPException(
            status_code=415,
            detail=f"The request body is compressed (Content-Encoding: {coding[:40]}); this server reads bodies "
            "only uncompressed: send it without Content-Encoding",
        )


@asynccontextmanager
async def _upload(request: Request) -> AsyncIterator[UploadFile]:
    """The multipart field ``file``, as Starlette spooled it (in memory up to 1 MiB, then on disk).

    Its bytes are read later, in a photo slot, so that waiting uploads do not
    all sit in memory at once.
    """
    if _media_type(request) != "multipart/form-data":
        content_type = request.headers.get("content-type", "")[:100]
        raise NotAnImageError(
            "Expected a multipart/form-data upload with an image in the field 'file' (or, on /api/predict, "
            f'JSON {{"pixels": [784 values]}}), got {content_type or "no content type"}.'
        )
    _refuse_coded(request)
    try:
        form = await request.form(max_files=1, max_fields=4)
        if not form:  # python-multipart ends a body cut short quietly, with the part it was reading left out
            raise HTTPException(400, "it holds no complete part: none, or one cut short before its --boundary--")
    except HTTPException as exc:  # Starlette's multipart parser: a form it cannot read, said with what to do
        reason = str(exc.detail).rstrip(".").replace(". ", "; ")
        detail = (
            f"The multipart form could not be read ({reason}); send one image in the field 'file', as "
            "curl -F file=@photo.png does."
        )
        raise HTTPException(status_code=400, detail=detail) from None  # malformed: 400, as Starlette says it
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InputError("The form has no file in the field 'file'; attach the image as file=@photo.png.")
        yield upload
    finally:
        await form.close()


# The three below run in worker threads: reading, decoding, segmenting and predicting are blocking or CPU work.


def _photo_bytes(upload: UploadFile, state: Served) -> bytes:
    """The upload's bytes, checked from the image header to be a plausible image before anything is decoded."""
    upload.file.seek(0)
    data = upload.file.read()
    check_image_header(data, state.max_pixels)
    return data


def _mnist_of_upload(upload: UploadFile, state: Served) -> tuple[np.ndarray, bool]:
    """The upload as the (28, 28) uint8 image the model sees, and whether it is a clean drawing."""
    return read_digit(_photo_bytes(upload, state))


def _second_look_at_upload(upload: UploadFile, state: Served, first: dict[str, Any], top: int) -> dict[str, Any]:
    return answering.look_again(state.predictor, _photo_bytes(upload, state), first, top)


def _why_blank_upload(upload: UploadFile, state: Served, answer: dict[str, Any]) -> dict[str, Any]:
    return answering.why_blank(answer, _photo_bytes(upload, state))


def _read_number_upload(upload: UploadFile, state: Served, top: int) -> dict[str, Any]:
    result = answering.read_number(_photo_bytes(upload, state), state.predictor, top=top)
    return _with_images(result, upload.filename)


def _with_images(result: dict[str, Any], file: str | None) -> dict[str, Any]:
    """``result`` as ``mnistlab predict --json`` prints it, plus each 28x28 image the model saw as a PNG."""
    out = answering.to_json(result, file)
    if "digits" in result:
        for shown, seen in zip(out["digits"], result["digits"]):
            shown["mnist_image_png"] = _png_data_url(seen["mnist_image"])
    else:
        out["mnist_image_png"] = _png_data_url(result["mnist_image"])
    return out


def _png_data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")
