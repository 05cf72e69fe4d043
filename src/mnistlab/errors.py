"""One exception tree for mnistlab.

Every error a user can cause is a ``MnistlabError`` whose message is one
sentence saying what was wrong and what to do. Each class carries what the
two faces do with it: ``exit_code`` for the CLI (2: the input was wrong) and
``http_status`` for the web API. Anything else escaping is a bug.
"""

from __future__ import annotations

__all__ = [
    "MnistlabError",
    "IDXFormatError",
    "DatasetError",
    "ChecksumError",
    "DownloadError",
    "LocalWriteError",
    "RecipeError",
    "ModelFileError",
    "NotReadyError",
    "InputError",
    "BodyTooLargeError",
    "ParameterError",
    "ImageError",
    "ImageTooLargeError",
    "NotAnImageError",
    "TrackingError",
    "ClusterError",
]


class MnistlabError(Exception):
    """Base class: a user-facing problem with a one-sentence explanation."""

    exit_code: int = 2
    http_status: int = 400


class IDXFormatError(MnistlabError, ValueError):
    """An IDX file is malformed (bad magic, dtype, rank, or size)."""

    http_status = 422


class DatasetError(MnistlabError):
    """A dataset is unknown, or its files cannot be found."""


class ChecksumError(DatasetError):
    """A file's content does not match the published sha256."""


class DownloadError(DatasetError):
    """No mirror delivered a verified copy of a file."""

    reason: str = ""  # what failed, without the advice: for a sentence that gives its own


class LocalWriteError(DatasetError):
    """A folder data must be written to cannot be written: read-only, full, or not the user's."""

    http_status = 503  # the machine's fault, not the request's


class RecipeError(MnistlabError, ValueError):
    """An unknown recipe or invalid recipe/estimator parameters."""

    http_status = 422


class ModelFileError(MnistlabError):
    """A model directory is missing, incompatible, or has been tampered with."""

    http_status = 503  # a server without a usable model: not the client's fault


class NotReadyError(MnistlabError):
    """The server is still loading its model, or failed to: ask again later (or fix the model).

    ``retry_after``: the seconds after which asking again may get another
    answer (the web API sends them as ``Retry-After``), or None where it will
    not.
    """

    http_status = 503

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InputError(MnistlabError, ValueError):
    """User-supplied data has the wrong shape, type, or range."""

    http_status = 422


class BodyTooLargeError(InputError):
    """A request body is larger than the server takes, refused from its declared or counted size."""

    http_status = 413


class ParameterError(InputError):
    """A keyword argument holds a value it cannot take.

    The message names the parameter as a Python caller wrote it ("limit must
    be ..."). Each mention is written ``{param}`` in ``template``, so a face
    that sets the parameter another way can name it its own way: the CLI
    prints ``exc.named("--limit")``.
    """

    def __init__(self, param: str, template: str) -> None:
        self.param = param
        self.template = template
        super().__init__(self.named(param))

    def named(self, name: str) -> str:
        """The message with each mention of the parameter spelt ``name``."""
        return self.template.replace("{param}", name)

    def __reduce__(self):  # rebuilt from (param, template) when pickled, e.g. by a worker process
        return type(self), (self.param, self.template)


class ImageError(InputError):
    """An image file cannot be read, or is not a plausible image."""


class ImageTooLargeError(ImageError):
    """An image (or upload) is refused from its declared size, before it is decoded."""

    http_status = 413


class NotAnImageError(ImageError):
    """The bytes are not an image at all, or the upload is empty."""

    http_status = 415


class TrackingError(MnistlabError):
    """The run-tracking store (MLflow) cannot be opened, read or written."""

    http_status = 503


class ClusterError(MnistlabError):
    """A Ray cluster cannot be reached, or lost the run's work for good."""

    http_status = 503
