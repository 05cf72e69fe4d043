"""The draw-a-digit page and its JSON API, behind ``mnistlab serve``.

``create_app`` builds one FastAPI application: the page (``pages/``, its
script and styles in ``static/``, no CDN), the API under ``/api``
(``routes``), offline OpenAPI docs at ``/docs``. The
model is loaded once, when the app starts.

Limits are enforced before any work is done: a body declared over
``max_upload_bytes`` is refused unread and the others are counted while they
arrive (413), a JSON body is held to ``MAX_JSON_BYTES``, an image's header is
read before its pixels (413 past ``max_pixels``), and photos are read in
reading threads, one per CPU (at least 2) and at most ``max_decodes``, so a
slow request never blocks the event loop and fifty uploads never decode fifty
photos at once. Every response carries the security headers of ``guard``;
HEAD is answered wherever GET is. Every refusal is ``{"detail": one
sentence}`` with the status its exception class carries, 404 and 405
included. ``serve`` runs the app under uvicorn with the connection limits of
``protocol`` (read timeouts, a connection cap).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import cv2
import fastapi_offline
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from mnistlab._cpus import usable_cpus
from mnistlab._processes import hangup_ends_the_process
from mnistlab._text import path_text
from mnistlab._version import __version__
from mnistlab.errors import MnistlabError, ModelFileError, NotReadyError, ParameterError
from mnistlab.reading.admission import MAX_PIXELS
from mnistlab.trust.batching import BatchedPredictor, batched
from mnistlab.trust.predict import Predictor, load_predictor
from mnistlab.web.guard import Guard
from mnistlab.web.limits import DEFAULT_MAX_UPLOAD_BYTES, BodyLimit
from mnistlab.web.protocol import ConnectionLimits, server_config
from mnistlab.web.routes import STATIC_DIR, Served, router
from mnistlab.web.workers import GRACEFUL_SHUTDOWN, MAX_WORKERS, reuseport_socket, run_workers

__all__ = ["create_app", "serve", "ready_predictor", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_DECODES"]

_log = logging.getLogger("uvicorn.error")  # where uvicorn writes its own errors
# python-multipart warns of each broken form it reads ("Did not find CR at end of boundary (2)"); with no handler
# anywhere, Python wrote each to stderr as a bare line. The client's 400 says what was wrong; an application that
# sets up logging of its own still gets these records.
logging.getLogger("python_multipart").addHandler(logging.NullHandler())

# Photos decoded at once, whatever the CPU count: each may take a few hundred MB while it is read.
DEFAULT_MAX_DECODES = 4
# Swagger UI's script and styles, shipped in the fastapi-offline wheel.
DOCS_FILES = Path(fastapi_offline.__file__).with_name("static")
# The scope key that holds the path this app is mounted at.
_ROOT = "mnistlab.root_path"


class _GuardedAPI(FastAPI):
    """FastAPI with ``Guard`` outside everything, Starlette's error middleware included, so a 500 gets the
    security headers too."""

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Where this app is mounted (a parent's prefix, uvicorn's --root-path), for the 404's sentence: the
        # scope's own root_path is a static mount's by the time its 404 is raised.
        scope[_ROOT] = scope.get("root_path", "")
        await super().__call__(scope, receive, send)


def create_app(
    model: Any = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int | None = None,
    max_decodes: int | None = None,
) -> FastAPI:
    """Build the application.

    ``model`` is a fitted estimator with ``predict_proba``, a model directory,
    a ``Predictor`` from ``load_predictor``, or None for the reader shipped with
    mnistlab; it is loaded once, when the application starts. Request bodies
    over ``max_upload_bytes`` get 413, and so do images whose header declares
    more than ``max_pixels`` (default: the photo reader's own limit,
    ``MAX_PIXELS``). At most ``max_decodes`` photos are read and decoded at
    once (default: one per CPU, at most ``DEFAULT_MAX_DECODES``).
    """
    if max_pixels is None:
        max_pixels = MAX_PIXELS
    if max_decodes is None:
        max_decodes = min(max(2, usable_cpus()), DEFAULT_MAX_DECODES)
    for name, value in (
        ("max_upload_bytes", max_upload_bytes),
        ("max_pixels", max_pixels),
        ("max_decodes", max_decodes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(name, f"{{param}} must be a whole number of at least 1, got {value!r}.")

    app = _GuardedAPI(
        title="mnistlab",
        version=__version__,
        description="Draw or photograph a digit; the model says which it is and whether it is sure.",
        lifespan=_lifespan(model, max_pixels, max_decodes),
        docs_url=None,  # routes.docs serves its own page: Swagger UI without inline script
        redoc_url=None,
        # No redirect from /api/health/ to /api/health: Starlette builds its Location from the request's Host
        # header, so a client could make the server point elsewhere; a 404 that names the right paths instead.
        redirect_slashes=False,
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    # Starlette types handlers as taking any Exception; these take the class they are registered for.
    app.add_exception_handler(MnistlabError, _user_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)
    app.include_router(router)  # first: routes are matched in order, and the API's carry the load
    app.mount("/static-offline-docs", StaticFiles(directory=DOCS_FILES), name="static-offline-docs")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _lifespan(model: Any, max_pixels: int, max_decodes: int) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load ``model`` once, in a worker thread while the server already answers (a model saved without its
    probability cut is calibrated then, which takes seconds), and share it as ``Served``; until then
    ``/api/ready`` says 503 and predictions wait. A ``Predictor`` already loaded is ready at once."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.served = None
        app.state.load_error = None
        app.state.loaded = anyio.Event()

        def ready(predictor: BatchedPredictor) -> None:
            readers = ThreadPoolExecutor(min(max(2, usable_cpus()), max_decodes), thread_name_prefix="reader")
            app.state.served = Served(predictor=predictor, readers=readers, max_pixels=max_pixels)
            app.state.loaded.set()

        async def load() -> None:
            try:
                ready(await anyio.to_thread.run_sync(ready_predictor, model))
            except MnistlabError as exc:  # a broken model: the server stays up and says why, with 503
                app.state.load_error = str(exc)
                app.state.loaded.set()
            except Exception as exc:  # a model of the user's own code that fails: said the same way, and logged
                _log.exception("The model could not be loaded")
                said = (str(exc).strip().splitlines() or [""])[0][:200]
                app.state.load_error = (
                    f"The model failed when it was loaded ({type(exc).__name__}{': ' + said if said else ''}); "
                    "fix or retrain it, then restart the server."
                )
                app.state.loaded.set()

        if isinstance(model, Predictor):
            ready(ready_predictor(model))
            loading = None
        else:
            loading = asyncio.create_task(load())
        try:
            yield
        finally:  # every request has been answered: the reading threads have nothing left to do
            if loading is not None:
                loading.cancel()
            if app.state.served is not None:  # the model's batching thread goes with the app, not at exit
                app.state.served.readers.shutdown(wait=False)
                app.state.served.predictor.batcher.close()

    return lifespan


def ready_predictor(model: Any) -> BatchedPredictor:
    """``model`` loaded (its files verified), answering through a micro-batcher, checked on a blank image.

    The check also warms the nets up: the first onnxruntime run allocates. It is run without the batcher,
    whose thread starts at the first request: a load that ends after its app has stopped leaves no thread.
    A ``BatchedPredictor`` given (``batched(predictor, max_wait=...)``) answers through a batcher of the app's
    own, with its settings: its own batcher's thread would outlive the app.
    """
    predictor = load_predictor(model)
    settings: dict[str, Any] = {}
    if isinstance(predictor, BatchedPredictor) and predictor.batcher is not None:
        settings = {"max_batch": predictor.batcher.max_batch, "max_wait": predictor.batcher.max_wait}
        predictor = Predictor(predictor.classify, predictor.card, predictor.reader, predictor.cut)
    answer = predictor.describe(np.zeros((1, 28, 28), np.uint8), 10)
    if len(answer) != 1 or not np.isfinite(answer[0]["probability"]) or len(answer[0]["top"]) != 10:
        raise ModelFileError("The model gave no valid answer for a test image; check or retrain it.")
    return batched(predictor, **settings)


async def _user_error(request: Request, exc: MnistlabError) -> JSONResponse:
    """The error's sentence with its class's status; a 503 that will pass says when to ask again, as the busy
    server's does (``protocol``), for a load balancer, a client or the page (static/app.js) to wait that long."""
    retry_after = exc.retry_after if isinstance(exc, NotReadyError) else None
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    detail = path_text(str(exc))  # a folder named b"caf\\xe9" as caf\\xe9: UTF-8 cannot encode it (a 500)
    return JSONResponse({"detail": detail}, status_code=exc.http_status, headers=headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _one_sentence(exc.errors())}, status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (no such route, wrong method, a broken multipart form) as one sentence."""
    path = _cut(request.url.path, 200)  # neither is echoed whole
    headers = dict(exc.headers or {})
    if exc.status_code == 404:  # where the app is mounted (a parent app's prefix, a proxy's --root-path), said so
        root = _cut(request.scope.get(_ROOT, "").rstrip("/"), 100)
        detail = f"There is nothing at {path}; the page is at {root}/, the API under {root}/api (see {root}/docs)."
    elif exc.status_code == 405:
        allowed = headers.get("Allow", "GET")  # only static files refuse without naming methods
        if "GET" in allowed.split(", ") and "HEAD" not in allowed:  # HEAD is answered wherever GET is (guard)
            allowed = headers["Allow"] = f"{allowed}, HEAD"
        detail = f"{_cut(request.method, 20)} is not allowed on {path}; use {allowed}."
    else:
        detail = str(exc.detail).rstrip(".") + "."
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers or None)


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most] + "..."


async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
    """The client left before its request was complete: nobody to answer, and the server's protocol has
    logged it in one line (not as an exception in the application)."""
    return Response(status_code=400)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: the JSON error shape for the client (the server still logs the traceback)."""
    detail = "The server failed on this request; this is a bug in mnistlab, please report it."
    return JSONResponse({"detail": detail}, status_code=500)


def _one_sentence(errors: Sequence[Any]) -> str:
    """The first of pydantic's validation errors as one sentence a person can act on."""
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    if err.get("type") == "json_invalid":
        return 'The request body is not valid JSON; send {"pixels": [784 numbers from 0 to 255]}.'
    if where.startswith("pixels") and err.get("type") in ("too_short", "too_long"):
        got = len(err.get("input", ()))
        return f"pixels must hold 784 values (28 x 28, row by row), got {got}."
    # A JSON body's value as the client wrote it (true, "3"), not as Python spells it (True, '3'); a query's as text.
    body = tuple(err.get("loc", ("body",)))[:1] not in (("query",), ("path",), ("header",), ("cookie",))
    shown = (_as_json(err["input"]) if body else repr(err["input"])) if "input" in err and where else ""
    shown = f" (got {shown[:40]}{'...' if len(shown) > 40 else ''})" if shown else ""
    if where.startswith("pixels.") and isinstance(err.get("input"), list):  # a 28 x 28 array's tolist(), say
        shown += "; send pixels as one flat list of 784 numbers, row after row, not as a list of rows"
    return f"Invalid request: {where or 'body'}: {err.get('msg', 'invalid value')}{shown}."


def serve(
    model_dir: Any = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    limits: ConnectionLimits | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_decodes: int | None = None,
    workers: int = 1,
    access_log: bool = False,
) -> None:
    """Load the model (failing fast with a ModelFileError), then serve it under uvicorn until Ctrl+C or
    SIGTERM (requests in flight are finished first), with the connection ``limits`` of ``protocol``
    (default ``ConnectionLimits()``), from ``workers`` processes (``web.workers``); ``access_log``: one log
    line per request."""
    # At most --workers' 256: a million was forked one after the other, each a server holding the model.
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ParameterError("workers", f"{{param}} must be a whole number from 1 to {MAX_WORKERS}, got {workers!r}.")
    if isinstance(port, bool) or not isinstance(port, int | np.integer) or not 1 <= port <= 65535:
        raise ParameterError("port", f"{{param}} must be a whole number from 1 to 65535, got {port!r}.")
    port = int(port)
    # A port taken, or a host of no address here: one ParameterError before the model loads, not uvicorn's
    # SystemExit once it had (a notebook's second serve() on the same port).
    reuseport_socket(host, port, shared=False).close()
    # Else each connection hung, its traceback logged; "no" is truthy: a line was logged for every request.
    if limits is not None and not isinstance(limits, ConnectionLimits):
        raise ParameterError("limits", f"{{param}} must be a ConnectionLimits or None, got {limits!r}.")
    if not isinstance(access_log, bool | np.bool_):
        raise ParameterError("access_log", f"{{param}} must be True or False, got {access_log!r}.")
    limits = limits or ConnectionLimits()
    # One BLAS thread in this process and the workers it forks: the confidence scores' small matrix
    # products cost twice the CPU with OpenBLAS's threads spinning, and a server's parallelism comes
    # from its requests (decode threads, workers), not from BLAS.
    threadpool_limits(1, user_api="blas")
    cv2.setNumThreads(1)  # the same for OpenCV's pool: a 320-px photo is no work to share, only to spin on
    app = create_app(load_predictor(model_dir), max_upload_bytes=max_upload_bytes, max_decodes=max_decodes)
    hangup_ends_the_process()
    config = server_config(app, host=host, port=port, limits=limits, access_log=access_log)
    if workers > 1:
        run_workers(config, workers)
        return
    config.timeout_graceful_shutdown = int(GRACEFUL_SHUTDOWN)
    uvicorn.Server(config).run()


def _as_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
