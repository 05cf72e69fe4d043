"""mnistlab: handwritten-digit classification, from verified data to a web page.

The public API is ``__all__``: every name below, with the module it comes
from. Names load on first use (PEP 562), so ``import mnistlab`` and
``mnistlab --help`` pay for neither scikit-learn, torch, matplotlib nor the
web stack.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from mnistlab._version import __version__

# mnistlab sends nothing anywhere unless asked. onnxruntime (1.32 on Linux) keeps a device id and a store of
# usage events under the user's cache folder (Microsoft/DeveloperTools) and, in a process that runs for half a
# minute (`serve`, `predict DIR`), sends them to mobile.events.data.microsoft.com; MLflow (3.x) writes an
# installation id into ~/.config/mlflow and may send usage events; Ray reports usage from the clusters it
# starts. Each reads its variable when it is imported or starts: set here, before any of mnistlab's modules
# imports them. A user who wants the events sent sets the variable otherwise.
for _name, _off in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
):
    os.environ.setdefault(_name, _off)
del _name, _off

# name -> the module that defines it
_SOURCES = {
    # data
    "DATASETS": "mnistlab.data.registry",
    "download_dataset": "mnistlab.data.download",
    "load_mnist": "mnistlab.data.load",
    "load_split": "mnistlab.data.load",
    "parse_idx": "mnistlab.data.idx",
    "read_idx": "mnistlab.data.idx",
    "write_idx": "mnistlab.data.idx",
    # models
    "Recipe": "mnistlab.models.recipes",
    "get_recipe": "mnistlab.models.recipes",
    "list_recipes": "mnistlab.models.recipes",
    "save_model": "mnistlab.models.files",
    "load_model": "mnistlab.models.files",
    "find_best_model": "mnistlab.models.files",
    "default_model_dir": "mnistlab.models.files",
    "models_root": "mnistlab.models.files",
    "Deskew": "mnistlab.models.transforms",
    "PixelScaler": "mnistlab.models.transforms",
    "CNNClassifier": "mnistlab.models.cnn.estimator",
    "export_onnx": "mnistlab.models.cnn.onnx",
    "OnnxPredictor": "mnistlab.models.cnn.onnx",
    # reading photos, scans and drawings
    "to_mnist": "mnistlab.reading.steps",
    "fit_to_box": "mnistlab.reading.geometry",
    "center_by_mass": "mnistlab.reading.geometry",
    "segment_digits": "mnistlab.reading.segment",
    # answers and when not to trust them
    "predict_image": "mnistlab.trust.predict",
    "predict_array": "mnistlab.trust.predict",
    "read_number": "mnistlab.trust.predict",
    # the lab: train, evaluate, compare, figures
    "train_recipe": "mnistlab.lab.train",
    "evaluate_model": "mnistlab.lab.evaluate",
    "export_model": "mnistlab.lab.export",
    "compare": "mnistlab.lab.compare",
    "save_digit_grid": "mnistlab.lab.plots",
    "save_mean_digits": "mnistlab.lab.plots",
    "save_class_balance": "mnistlab.lab.plots",
    "save_confusion_matrix": "mnistlab.lab.plots",
    "save_misclassified_gallery": "mnistlab.lab.plots",
    "save_accuracy_vs_time": "mnistlab.lab.plots",
    "ascii_digit": "mnistlab.lab.plots",
    # one exception tree: each class carries its CLI exit code and HTTP status
    "MnistlabError": "mnistlab.errors",
    "IDXFormatError": "mnistlab.errors",
    "DatasetError": "mnistlab.errors",
    "ChecksumError": "mnistlab.errors",
    "DownloadError": "mnistlab.errors",
    "LocalWriteError": "mnistlab.errors",
    "RecipeError": "mnistlab.errors",
    "ModelFileError": "mnistlab.errors",
    "NotReadyError": "mnistlab.errors",
    "InputError": "mnistlab.errors",
    "BodyTooLargeError": "mnistlab.errors",
    "ImageError": "mnistlab.errors",
    "ImageTooLargeError": "mnistlab.errors",
    "NotAnImageError": "mnistlab.errors",
    "ParameterError": "mnistlab.errors",
    "TrackingError": "mnistlab.errors",
    "ClusterError": "mnistlab.errors",
}

__all__ = ["__version__", *_SOURCES]


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name]), name)
        globals()[name] = value  # next time without this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from mnistlab.data.download import download_dataset
    from mnistlab.data.idx import parse_idx, read_idx, write_idx
    from mnistlab.data.load import load_mnist, load_split
    from mnistlab.data.registry import DATASETS
    from mnistlab.errors import (
        BodyTooLargeError,
        ChecksumError,
        ClusterError,
        DatasetError,
        DownloadError,
        IDXFormatError,
        ImageError,
        ImageTooLargeError,
        InputError,
        LocalWriteError,
        MnistlabError,
        ModelFileError,
        NotAnImageError,
        NotReadyError,
        ParameterError,
        RecipeError,
        TrackingError,
    )
    from mnistlab.lab.compare import compare
    from mnistlab.lab.evaluate import evaluate_model
    from mnistlab.lab.export import export_model
    from mnistlab.lab.plots import (
        ascii_digit,
        save_accuracy_vs_time,
        save_class_balance,
        save_confusion_matrix,
        save_digit_grid,
        save_mean_digits,
        save_misclassified_gallery,
    )
    from mnistlab.lab.train import train_recipe
    from mnistlab.models.cnn.estimator import CNNClassifier
    from mnistlab.models.cnn.onnx import OnnxPredictor, export_onnx
    from mnistlab.models.files import default_model_dir, find_best_model, load_model, models_root, save_model
    from mnistlab.models.recipes import Recipe, get_recipe, list_recipes
    from mnistlab.models.transforms import Deskew, PixelScaler
    from mnistlab.reading.geometry import center_by_mass, fit_to_box
    from mnistlab.reading.segment import segment_digits
    from mnistlab.reading.steps import to_mnist
    from mnistlab.trust.predict import predict_array, predict_image, read_number
