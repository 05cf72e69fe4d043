"""mnistlab: handwritten-digit classification, from verified data to a web page."""

from ._datasets import DATASETS, download_dataset
from ._errors import (
    ChecksumError,
    DatasetError,
    DownloadError,
    IDXFormatError,
    ImageError,
    InputError,
    MnistlabError,
    ModelFileError,
    RecipeError,
)
from ._idx import parse_idx, read_idx, write_idx
from ._load import load_mnist, load_split
from ._recipes import Recipe, get_recipe, list_recipes

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # data
    "DATASETS",
    "download_dataset",
    "load_mnist",
    "load_split",
    "parse_idx",
    "read_idx",
    "write_idx",
    # models
    "Recipe",
    "get_recipe",
    "list_recipes",
    # errors
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
