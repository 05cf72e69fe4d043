"""The draw-a-digit page and its JSON API, behind ``mnistlab serve``.

``create_app`` builds one FastAPI application: the page (``static/``, no CDN),
the API under ``/api`` (``routes``), offline OpenAPI docs at ``/docs``. The
model is loaded once, when the app starts.

Limits are enforced before any work is done: the request body is counted
while it arrives (413 past ``max_upload_bytes``), an image's header is read
before its pixels (413 past ``max_pixels``), and inference runs in worker
threads, at most one per CPU at a time, so a slow request never blocks the
event loop and fifty uploads never decode fifty photos at once. Every refusal
is ``{"detail": one sentence}`` with the status its exception class carries.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from mnistlab._version import __version__
from mnistlab.errors import InputError, MnistlabError
from mnistlab.reading.decode import MAX_PIXELS
from mnistlab.trust.predict import load_predictor
from mnistlab.web.limits import DEFAULT_MAX_UPLOAD_BYTES, BodyLimit
from mnistlab.web.routes import STATIC_DIR, Served, router

__all__ = ["create_app", "serve", "DEFAULT_MAX_UPLOAD_BYTES"]


def create_app(
    model: Any = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int | None = None,
) -> FastAPI:
    """Build the application.

    ``model`` is a fitted estimator with ``predict_proba``, a model directory,
    a ``Predictor`` from ``load_predictor``, or None for the reader shipped with
    mnistlab; it is loaded once, when the application starts. Request bodies over ``max_upload_bytes`` get 413,
    and so do images whose header declares more than ``max_pixels`` (default:
    the photo reader's own limit, ``MAX_PIXELS``).
    """
    if max_pixels is None:
        max_pixels = MAX_PIXELS
    if max_upload_bytes < 1 or max_pixels < 1:
        raise InputError(f"Limits must be positive, got max_upload_bytes={max_upload_bytes}, max_pixels={max_pixels}.")

    app = FastAPIOffline(
        title="mnistlab",
        version=__version__,
        description="Draw or photograph a digit; the model says which it is and whether it is sure.",
        lifespan=_lifespan(model, max_pixels),
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    # Starlette types handlers as taking any Exception; these take the class they are registered for.
    app.add_exception_handler(MnistlabError, _user_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    return app


def _lifespan(model: Any, max_pixels: int) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load ``model`` once at start-up and share it as ``Served`` (in a thread: a model saved without its
    probability cut is calibrated then, which takes seconds)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = await anyio.to_thread.run_sync(load_predictor, model)
        limiter = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        app.state.served = Served(predictor=predictor, limiter=limiter, max_pixels=max_pixels)
        yield

    return lifespan


async def _user_error(request: Request, exc: MnistlabError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _one_sentence(exc.errors())}, status_code=422)


def _one_sentence(errors: Sequence[Any]) -> str:
    """The first of pydantic's validation errors as one sentence a person can act on."""
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    if err.get("type") == "json_invalid":
        return 'The request body is not valid JSON; send {"pixels": [784 numbers from 0 to 255]}.'
    if where.startswith("pixels") and err.get("type") in ("too_short", "too_long"):
        got = len(err.get("input", ()))
        return f"pixels must hold 784 values (28 x 28, row by row), got {got}."
    return f"Invalid request: {where or 'body'}: {err.get('msg', 'invalid value')}."


def serve(model_dir: Any = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the model (failing fast with a ModelFileError), then run the app under uvicorn until Ctrl+C."""
    uvicorn.run(create_app(load_predictor(model_dir)), host=host, port=port, log_level="info")
