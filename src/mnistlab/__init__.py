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
from ._handwriting import center_by_mass, fit_to_box, segment_digits, to_mnist
from ._load import load_mnist, load_split
from ._recipes import Recipe, get_recipe, list_recipes
from ._modelfiles import default_model_dir, find_best_model, load_model, models_root, save_model
from ._training import compare, evaluate_model, train_recipe
from ._transforms import Deskew, PixelScaler
from ._predict import predict_array, predict_image, read_number

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
    "train_recipe",
    "evaluate_model",
    "compare",
    "save_model",
    "load_model",
    "find_best_model",
    "default_model_dir",
    "models_root",
    "Deskew",
    "PixelScaler",
    # CNNs (loaded on first use: torch adds seconds to `import mnistlab`)
    "CNNClassifier",
    "export_onnx",
    "OnnxPredictor",
    # handwriting: photos, scans and drawings
    "to_mnist",
    "segment_digits",
    "fit_to_box",
    "center_by_mass",
    "predict_image",
    "predict_array",
    "read_number",
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
    if name == "CNNClassifier":  # torch, likewise
        from ._cnn import CNNClassifier

        return CNNClassifier
    if name in ("export_onnx", "OnnxPredictor"):
        from . import _onnx

        return getattr(_onnx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
