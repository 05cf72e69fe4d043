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
    # figures (loaded on first use: matplotlib adds ~0.8 s to `import mnistlab`)
    "save_digit_grid",
    "save_mean_digits",
    "save_class_balance",
    "save_confusion_matrix",
    "save_misclassified_gallery",
    "save_accuracy_vs_time",
    "ascii_digit",
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

_FIGURES = {
    "save_digit_grid", "save_mean_digits", "save_class_balance", "save_confusion_matrix",
    "save_misclassified_gallery", "save_accuracy_vs_time", "ascii_digit",
}


def __getattr__(name):
    # Figures import matplotlib, which most commands never need; load it on first use.
    if name in _FIGURES:
        from . import _plots

        return getattr(_plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
