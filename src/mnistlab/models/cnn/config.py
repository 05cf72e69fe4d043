"""The JSON config that rebuilds a fitted ``CNNClassifier``, and its schema.

A saved CNN is its weights plus this config (``files.cnn_to_bytes``): the
parameters, the classes and their dtype, the image shape, the member seeds,
the thread count and the training history. Every field shapes the rebuilt
model or what it answers, so ``check_config`` checks each one (type, range,
and that the fields agree with each other) and refuses a key it does not
know, before anything is built: an absurd image shape or member count never
reaches an allocation. ``check_tensors`` then compares the weights with the
net the config describes, built on torch's "meta" device (shapes, no memory).
A user's own torch module (``CNNClassifier(module=...)``) is saved as the name
of its class, since its code is not in the file: the schema takes that name
(or null), and ``files.cnn_from_bytes`` then refuses to rebuild such a net.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mnistlab.data.seeds import MAX_SEED
from mnistlab.errors import ModelFileError, RecipeError
from mnistlab.models.cnn.checks import MAX_THREADS, check_params

__all__ = [
    "CONFIG_KEYS",
    "HISTORY_KEYS",
    "OPTIONAL_PARAMS",
    "MAX_CLASSES",
    "MAX_SIDE",
    "check_config",
    "check_saveable",
    "check_tensors",
]

CONFIG_KEYS = (
    "estimator",
    "params",
    "classes",
    "classes_dtype",
    "n_features_in",
    "image_shape",
    "seeds",
    "n_threads",
    "n_epochs",
    "train_seconds",
    "history",
)
HISTORY_KEYS = ("member", "epoch", "epochs", "loss", "train_accuracy", "val_accuracy", "seconds", "elapsed")
# Parameters a config may leave out, and the value they then have: configs saved before
# the parameter existed describe mnistlab's own nets, which is what the default builds.
OPTIONAL_PARAMS: dict = {"module": None}
MAX_CLASSES = 1000
MAX_SIDE = 1024  # pixels per image side: MNIST's are 28
MAX_LABEL_CHARS = 64  # string class labels: "sandal", not a book
MAX_MODULE_CHARS = 500  # "package.module.Class" of a user's torch module
_DTYPE_KINDS = "biuf" + "U"  # bool, integers, floats, unicode: what np.unique of labels gives


class _Invalid(Exception):
    """The config breaks the schema; the message names the field."""


def check_config(config, source: str) -> None:
    """Raise ModelFileError (naming ``source``) unless ``config`` is a config ``cnn_to_bytes`` could have written."""
    try:
        _check(config)
    except _Invalid as exc:
        raise ModelFileError(
            f"{source} holds a CNN config mnistlab did not write ({exc}); restore the original files or retrain the model."
        ) from None


def _check(config) -> None:
    from mnistlab.models.cnn.estimator import CNNClassifier  # the estimator imports this module's neighbours

    if not isinstance(config, dict):
        raise _Invalid("it is not an object")
    keys = sorted(config)
    if keys != sorted(CONFIG_KEYS):
        extra, missing = sorted(set(keys) - set(CONFIG_KEYS)), sorted(set(CONFIG_KEYS) - set(keys))
        raise _Invalid(f"unknown field {extra[0]!r}" if extra else f"no {missing[0]!r}")
    if config["estimator"] != "CNNClassifier":
        raise _Invalid(f"estimator is {config['estimator']!r}, not 'CNNClassifier'")
    params = config["params"]
    if not isinstance(params, dict):
        raise _Invalid("params is not an object")
    names = set(CNNClassifier._get_param_names()) - {"callback"}
    if not names - set(OPTIONAL_PARAMS) <= set(params) <= names:
        extra, missing = sorted(set(params) - names), sorted(names - set(params) - set(OPTIONAL_PARAMS))
        raise _Invalid(f"unknown parameter {extra[0]!r}" if extra else f"no parameter {missing[0]!r}")
    try:
        check_params({**params, "callback": None})
    except RecipeError as exc:
        raise _Invalid(str(exc).rstrip(".")) from None
    _integer("random_state", params["random_state"], 0, MAX_SEED, optional=True)
    _check_module(params.get("module", OPTIONAL_PARAMS["module"]))
    _integer("verbose", int(params["verbose"]) if type(params["verbose"]) is bool else params["verbose"], 0, 100)
    _check_classes(config["classes"], config["classes_dtype"])
    _check_shape(config["image_shape"], config["n_features_in"])
    n_members = params["n_members"]
    seeds = config["seeds"]
    if not isinstance(seeds, list) or len(seeds) != n_members:
        raise _Invalid(f"seeds must list one seed per member ({n_members})")
    for seed in seeds:
        _integer("each seed", seed, 0, 2**31 - 2)
    _integer("n_threads", config["n_threads"], 1, MAX_THREADS)
    _integer("n_epochs", config["n_epochs"], 0, n_members * params["epochs"])
    _number("train_seconds", config["train_seconds"])
    _check_history(config["history"], config["n_epochs"])


def _check_module(module) -> None:
    """A user's torch module is saved as the name of its class (its code is not in the file), or None."""
    if module is None:
        return
    if not isinstance(module, str) or not 1 <= len(module) <= MAX_MODULE_CHARS or not module.isprintable():
        raise _Invalid(f"module must be null or the name of a torch module's class, not {module!r:.80}")


def _integer(name: str, value, low: int, high: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not int or not low <= value <= high:
        raise _Invalid(f"{name} must be an integer from {low} to {high}, not {value!r}")


def _number(name: str, value, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _Invalid(f"{name} must be a number of at least 0, not {value!r}")


def _check_classes(classes, dtype_name) -> None:
    """Classes as ``np.unique`` gives them: 2 or more, distinct, in increasing order, of a plain dtype."""
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
        raise _Invalid(f"classes must be a list of 2 to {MAX_CLASSES} labels")
    try:
        dtype = np.dtype(dtype_name) if isinstance(dtype_name, str) else None
    except (TypeError, ValueError, SyntaxError):
        dtype = None
    if (
        dtype is None
        or dtype.kind not in _DTYPE_KINDS
        or dtype.fields is not None
        or dtype.shape != ()
        or (dtype.kind == "U" and dtype.itemsize > 4 * MAX_LABEL_CHARS)
    ):
        raise _Invalid(f"classes_dtype {dtype_name!r} is not a label dtype (integers, floats, booleans or short text)")
    kind_types = {"b": (bool,), "i": (int,), "u": (int,), "f": (int, float), "U": (str,)}[dtype.kind]
    if not all(type(c) in kind_types for c in classes):
        raise _Invalid(f"classes do not all fit classes_dtype {dtype_name!r}")
    try:
        array = np.asarray(classes, dtype=dtype)
    except (OverflowError, ValueError, TypeError):
        raise _Invalid(f"classes do not all fit classes_dtype {dtype_name!r}") from None
    if array.tolist() != classes:
        raise _Invalid(f"classes do not all fit classes_dtype {dtype_name!r}")
    if not bool(np.all(array[1:] > array[:-1])):
        raise _Invalid("classes are not distinct and in increasing order, as training sorts them")


def _check_shape(image_shape, n_features) -> None:
    """(height, width) within bounds, holding n_features pixels: all of them, or the smallest square that does."""
    if not isinstance(image_shape, list) or len(image_shape) != 2:
        raise _Invalid("image_shape must be [height, width]")
    for side in image_shape:
        _integer("each side of image_shape", side, 1, MAX_SIDE)
    h, w = image_shape
    _integer("n_features_in", n_features, 1, h * w)
    if n_features != h * w and not (h == w and (h - 1) ** 2 < n_features):
        raise _Invalid(f"n_features_in {n_features} does not fill image_shape {image_shape}")


def _check_history(history, n_epochs: int) -> None:
    if not isinstance(history, list) or len(history) != n_epochs:
        raise _Invalid(f"history must hold one row per epoch run ({n_epochs})")
    for row in history:
        if not isinstance(row, dict) or sorted(row) != sorted(HISTORY_KEYS):
            raise _Invalid(f"each history row must hold exactly {', '.join(HISTORY_KEYS)}")
        for key in ("member", "epoch", "epochs"):
            _integer(f"history {key}", row[key], 0, 100_000)
        for key in ("loss", "train_accuracy", "seconds", "elapsed"):
            _number(f"history {key}", row[key])
        _number("history val_accuracy", row["val_accuracy"], optional=True)


def check_saveable(tensors: dict[str, np.ndarray], config, estimator) -> None:
    """Refuse to save a fitted ``estimator`` that loading would refuse, or rebuild as other nets: NaN or infinite
    weights (``check_tensors``), parameters changed since the fit, or a config outside the schema."""
    name = type(estimator).__name__
    broken = _non_finite(tensors)
    if broken is not None:
        raise ModelFileError(
            f"This fitted {name}'s weights hold NaN or infinite values (in tensor {broken!r}), so its answers "
            "are no numbers and it is not saved; train it again (with a lower lr if its training diverged)."
        )
    _check_params_describe_the_nets(estimator, tensors)
    check_config(config, f"This fitted {name}")


def _check_params_describe_the_nets(estimator, tensors: dict[str, np.ndarray]) -> None:
    """Refuse a CNN whose parameters (``set_params`` since its fit) describe other nets than it holds: the file,
    rebuilt from them, was refused as damaged (another ``arch``) or read its digits otherwise (other ``inputs``)."""
    from mnistlab.models.cnn.estimator import build_model  # torch is loaded: a CNN exists

    # Shapes without memory; a user's module is copied and re-initialised, which must not move torch's generator.
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        described = build_model(estimator, device="meta")
    shapes = {k: tuple(t.shape) for k, t in described.state_dict().items()}
    deskews = [bool(getattr(m, "deskew_input", False)) for m in described.members]
    if shapes != {k: tuple(a.shape) for k, a in tensors.items()} or deskews != [
        bool(getattr(m, "deskew_input", False)) for m in estimator.model_.members
    ]:
        raise ModelFileError(
            f"This {type(estimator).__name__}'s parameters were changed since it was fitted (arch, inputs, "
            "n_members or module), so they describe other nets than it holds; set them back, or fit it again, "
            "before saving it."
        )


def _non_finite(tensors: dict[str, np.ndarray]) -> str | None:
    """The name of the first tensor holding NaN or infinity, or None."""
    return next((name for name, a in tensors.items() if not np.isfinite(a).all()), None)


def check_tensors(expected: torch.nn.Module, found: dict[str, np.ndarray], source: str) -> None:
    """Refuse weights whose names, shapes or dtypes differ from ``expected``'s state (a module built on the meta
    device), or that hold NaN or infinity: mnistlab saves none (``files.cnn_to_bytes``), and such a net answered
    "0" for every digit, and "sure" of it. Of another dtype (float64, float16, int8, bool: the file's header says
    which), the weights were cast as they were copied into the net, which then held other numbers than the file."""
    want = {name: tuple(t.shape) for name, t in expected.state_dict().items()}
    have = {name: tuple(a.shape) for name, a in found.items()}
    if want == have:
        what = _other_dtype(expected, found) or _non_finite_weights(found)
        if what is None:
            return
        raise ModelFileError(
            f"{source} holds {what}, which mnistlab never saves; restore the original files or retrain the model."
        )
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        what = f"no tensor {missing[0]!r}" if missing else f"an unexpected tensor {extra[0]!r}"
    else:
        name = next(n for n in want if want[n] != have[n])
        what = f"tensor {name!r} is {list(have[name])}, the config needs {list(want[name])}"
    raise ModelFileError(
        f"{source} does not hold the net its config describes ({what}); restore the original files or retrain the model."
    )


def _other_dtype(expected: torch.nn.Module, found: dict[str, np.ndarray]) -> str | None:
    """Which tensor of ``found`` has another dtype than ``expected``'s of its name (torch and numpy name their
    dtypes alike: float32, int64), said as "X weights (in tensor 'name', where its net holds Y)"; or None."""
    for name, tensor in expected.state_dict().items():
        wanted = str(tensor.dtype).removeprefix("torch.")
        if found[name].dtype.name != wanted:
            return f"{found[name].dtype.name} weights (in tensor {name!r}, where its net holds {wanted})"
    return None


def _non_finite_weights(found: dict[str, np.ndarray]) -> str | None:
    broken = _non_finite(found)
    return None if broken is None else f"NaN or infinite weights (in tensor {broken!r})"
