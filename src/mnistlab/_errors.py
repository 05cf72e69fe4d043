"""One exception hierarchy for mnistlab.

Every error a user can cause is a ``MnistlabError`` whose message is one
sentence saying what was wrong and what to do. The CLI prints it and exits 2;
the web API turns it into a 4xx. Anything else escaping is a bug.
"""

__all__ = [
    "MnistlabError",
    "IDXFormatError",
    "DatasetError",
    "ChecksumError",
    "DownloadError",
    "RecipeError",
    "ModelFileError",
    "InputError",
    "ImageError",
]


class MnistlabError(Exception):
    """Base class: a user-facing problem with a one-sentence explanation."""


class IDXFormatError(MnistlabError, ValueError):
    """An IDX file is malformed (bad magic, dtype, rank, or size)."""


class DatasetError(MnistlabError):
    """A dataset is unknown, or its files cannot be found."""


class ChecksumError(DatasetError):
    """A file's content does not match the published sha256."""


class DownloadError(DatasetError):
    """No mirror delivered a verified copy of a file."""


class RecipeError(MnistlabError, ValueError):
    """An unknown recipe or invalid recipe/estimator parameters."""


class ModelFileError(MnistlabError):
    """A model directory is missing, incompatible, or has been tampered with."""


class InputError(MnistlabError, ValueError):
    """User-supplied data has the wrong shape, type, or range."""


class ImageError(InputError):
    """An image file cannot be read, or is not a plausible image."""
