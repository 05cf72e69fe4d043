"""What the API takes and gives back, as pydantic models.

The answers mirror ``mnistlab predict --json`` (same keys, in the same order,
probabilities to 4 places) plus the 28x28 image the model saw. FastAPI
validates every answer against these models before sending it, so the
published schema is the one clients get.

Both request bodies are read by the routes themselves (``/api/predict`` takes
either one), so FastAPI cannot infer them: ``request_body`` turns the models
declared here into the route's OpenAPI ``requestBody``.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PixelsIn",
    "ImageUpload",
    "DigitSeen",
    "DigitOut",
    "NumberOut",
    "Health",
    "ModelCard",
    "Problem",
    "PROBLEMS",
    "NOT_READY",
    "request_body",
    "named_twice",
]

Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False)]


class PixelsIn(BaseModel):
    """A digit already in MNIST form: 784 grey values row by row, white ink on black, 0-255.

    Used as is, like a .npy file given to ``mnistlab predict`` (values that all
    lie within 0-1 are taken as floats and scaled to 0-255). Strict: pixels
    must be JSON numbers and ``top`` a JSON integer; strings, booleans,
    unknown keys and a key named twice are refused, not converted.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    pixels: Annotated[list[Pixel], Field(min_length=784, max_length=784)]
    top: int | None = Field(None, ge=1, le=10, description="How many ranked digits to return (overrides ?top=).")


def named_twice(body: bytes, pixels: PixelsIn) -> str | None:
    """Why ``body``, read as ``pixels``, is ambiguous: it names a key twice (RFC 8259 leaves which value counts to the
    parser; pydantic's takes the last); None if it names each once.

    Its values are numbers and null alone, so the only strings in it are its keys, two quotes each: counting its
    quotes costs a microsecond, and only a body with more is parsed again to name the key.
    """
    if body.count(b'"') == 2 * len(pixels.model_fields_set):
        return None
    seen: list[str] = []
    with suppress(ValueError, RecursionError):  # a value pydantic never read (the first of two) that json cannot
        json.loads(body, object_pairs_hook=lambda pairs: seen.extend(key for key, _ in pairs))
    twice = sorted({json.dumps(key) for key in seen if seen.count(key) > 1}) or ["a key"]
    return f"The JSON body names {' and '.join(twice)} more than once; send each key once."


class ImageUpload(BaseModel):
    """A multipart/form-data upload: any photo, scan or canvas export in the field `file`."""

    file: bytes = Field(description="A PNG, JPEG, BMP, TIFF, WebP or GIF image.")


class _Named(BaseModel):
    # A base of its own so that ``file`` comes first in the answers, as in ``predict --json``.
    file: str | None = Field(description="The uploaded file's name; null for JSON pixels.")


class DigitSeen(BaseModel):
    """One digit as the model read it (in a number, or as a single answer)."""

    digit: int
    probability: float
    top: list[tuple[int, float]] = Field(description="The most likely digits, best first, as [digit, probability].")
    confident: bool
    reason: str | None = Field(description="Why the answer is not to be trusted; null when it is.")
    mnist_image_png: str = Field(
        pattern=r"^data:image/png;base64,",
        description="The 28x28 image the model saw, as a data:image/png;base64 URL.",
    )


class DigitOut(DigitSeen, _Named):
    """One prediction, as ``mnistlab predict --json`` prints it, plus the image the model saw."""


class NumberOut(_Named):
    """A row of digits read left to right, as ``mnistlab predict --number --json`` prints it."""

    number: str
    digits: list[DigitSeen]
    confident: bool


class Health(BaseModel):
    """The server is up; which version, and the recipe of the model it serves."""

    status: Literal["ok"]
    version: str
    model: str | None = Field(
        description="The loaded model's recipe (the shipped reader's name); null while it loads or without a card."
    )
    worker: int = Field(description="The id of the server process that answered (one of several with --workers).")


class _Card(BaseModel):
    # A card holds more than the keys named here (a trained model's params and config, the reader's plan and
    # thresholds): those pass through as the file holds them. The route leaves out keys the card does not have.
    model_config = ConfigDict(extra="allow")
    format_version: int
    created: str | None = Field(None, description="When the model was saved (ISO 8601, UTC).")
    data_sha256: str | None = Field(None, description="sha256 of the data it was trained on.")
    versions: dict[str, str] | None = Field(None, description="The packages it was trained with, and their versions.")
    metrics: dict[str, Any] | None = None


class TrainedCard(_Card):
    """A model saved by ``mnistlab train`` or ``save_model``: its ``model.json`` (``save_model`` from Python
    writes only the keys it is given besides the weights')."""

    weights_file: str
    weights_sha256: str
    format: Literal["skops", "safetensors"]
    recipe: str | None = None
    dataset: str | None = None
    seed: int | None = None
    split: str | None = None


class ReaderCard(_Card):
    """The reader shipped with mnistlab: its ``card.json``."""

    name: str
    files: dict[str, str] = Field(description="The sha256 of each of the reader's files.")


class EstimatorCard(BaseModel):
    """A fitted classifier passed from Python, which has no card: its class name."""

    model_config = ConfigDict(extra="forbid")
    estimator: str


ModelCard = TrainedCard | ReaderCard | EstimatorCard


class Problem(BaseModel):
    """Every refusal: one sentence saying what was wrong and what to do."""

    detail: str


# The 503 of a model not loaded (or of a server full), with the Retry-After it carries while that will pass.
_UNAVAILABLE = {
    "model": Problem,
    "description": "Not ready: the model is loading (Retry-After) or failed to load (none), or the server is full.",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before asking again; absent where asking again will not help.",
            "schema": {"type": "integer"},
        }
    },
}
# The refusals a route that reads a body gives (400 a broken form, 408 a body too slow to arrive, 413, 415, 422,
# 503 no model), and those of a route that needs only the model.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    **{code: {"model": Problem} for code in (400, 408, 413, 415, 422)},
    503: _UNAVAILABLE,
}
NOT_READY: dict[int | str, dict[str, Any]] = {503: _UNAVAILABLE}


def request_body(*, multipart: type[BaseModel] | None = None, json: type[BaseModel] | None = None) -> dict[str, Any]:
    """``openapi_extra`` declaring a required body as ``multipart`` form fields and/or a ``json`` object."""
    content = {}
    if multipart is not None:
        content["multipart/form-data"] = {"schema": multipart.model_json_schema()}
    if json is not None:
        content["application/json"] = {"schema": json.model_json_schema()}
    return {"requestBody": {"required": True, "content": content}}
