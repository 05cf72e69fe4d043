"""Saved model directories: weights without pickle, plus a JSON card.

A model directory holds the weights (``model.skops`` for scikit-learn pipelines, ``model.safetensors`` for CNNs)
and ``model.json``, the card: recipe, parameters, seed, data checksum, package versions, metrics, the weights file
name, its sha256, ``format_version`` and ``card_sha256``, which covers the whole card (``models.cards``: its schema
and checksum). Loading checks the card, then the weights' sha256, *before* deserialising anything, and skops only
rebuilds the types on an explicit allow-list, so a model directory from elsewhere cannot run code
(``models.skopsfile``, which also holds what loading costs to the file's size).

A CNN is its weights as safetensors plus a JSON config (parameters, classes, seeds, history): ``cnn_to_bytes``
/ ``cnn_from_bytes``, used for model directories (config in the card) and for the digit detector's cache
(config in the file's metadata). The config is checked against its schema and the weights against the net it
describes before a net is built (``models.cnn.config``). torch is imported only when a CNN is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load, save

from mnistlab._atomic import atomic_write_together, folders_made, locked_folder
from mnistlab.data.home import checked_path, home_path, setting_folder
from mnistlab.data.registry import DIGIT_NAMES, registered_class_names
from mnistlab.errors import ModelFileError
from mnistlab.models.cards import FORMAT_VERSION, MAX_CARD_BYTES, card_sha256, check_card_to_save, parse_card
from mnistlab.models.folder import (
    CARD_FILE,
    ONNX_FILE,
    SAFETENSORS_FILE,
    SKOPS_FILE,
    check_model_name,
    check_save_target,
    followed_link,
    read_regular,
    read_weights,
    remove_stale,
)
from mnistlab.models.skopsfile import TRUSTED_TYPES, canonical_skops, load_skops, skops_io

__all__ = [
    "FORMAT_VERSION",
    "TRUSTED_TYPES",
    "save_model",
    "load_model",
    "read_card",
    "models_root",
    "default_model_dir",
    "find_best_model",
    "is_cnn",
    "cnn_to_bytes",
    "cnn_from_bytes",
]


def models_root() -> Path:
    """``$XDG_DATA_HOME/mnistlab/models``, else ``~/.local/share/mnistlab/models``."""
    return setting_folder("XDG_DATA_HOME", "~/.local/share", ModelFileError) / "mnistlab" / "models"


def default_model_dir(recipe: str) -> Path:
    """Where ``mnistlab train`` saves a model by default: ``models_root() / recipe``, ``recipe`` a recipe's name
    or the ``"name"`` a sweep's spec file holds (``knn-tuned``), not the spec file's path.

    >>> default_model_dir("knn-tuned") == models_root() / "knn-tuned"
    True
    """
    return models_root() / check_model_name(recipe)


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a Ctrl+C (``KeyboardInterrupt``) unwound: "Can't close the ZIP file while
    there is an open writing handle" was said as a model skops cannot store, and the Ctrl+C was lost."""
    seen, depth = exc.__context__, 0
    while seen is not None and depth < 20:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen, depth = seen.__context__, depth + 1
    return False


def _serialise(estimator) -> tuple[str, bytes, dict]:
    """Return (weights file name, weights bytes, extra card fields)."""
    if is_cnn(estimator):
        data, config = cnn_to_bytes(estimator)
        return SAFETENSORS_FILE, data, {"format": "safetensors", "config": config}

    sio = skops_io()  # only for classic models: skops takes a second to import
    _check_fitted_classifier(estimator)
    try:
        data = canonical_skops(sio.dumps(estimator))  # the same model, the same bytes
    except Exception as exc:  # skops has no form for a CNN's torch tensors in a Pipeline: a sentence, no traceback
        if _interrupted(exc):  # Ctrl+C inside skops's zip writing came out as zipfile's ValueError on unwinding
            raise KeyboardInterrupt from None
        raise ModelFileError(
            f"Cannot save this model safely: skops cannot store what it holds ({type(exc).__name__}: {exc}), which "
            "is outside mnistlab's allow-list; save a registered recipe's model, or a CNNClassifier on its own."
        ) from None
    unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if unknown:
        # Saving what load_model would refuse only moves the error to later.
        raise ModelFileError(
            f"Cannot save this model safely: it contains types outside mnistlab's allow-list ({', '.join(unknown)}), "
            "and loading it would import and run that code, so load_model refuses such a file; save a model of "
            "scikit-learn's and mnistlab's own classes (a recipe's, a Pipeline of them), or save this one yourself."
        )
    return SKOPS_FILE, data, {"format": "skops"}


def _check_fitted_classifier(estimator) -> None:
    """Refuse what no one could load and predict with: an object without ``predict``, or one not fitted."""
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not callable(getattr(estimator, "predict", None)):
        raise ModelFileError(
            f"Cannot save a {type(estimator).__name__}: save_model saves a fitted classifier (one with fit and "
            "predict, such as a recipe's)."
        )
    if isinstance(estimator, BaseEstimator):
        try:
            check_is_fitted(estimator)
        except NotFittedError:
            raise ModelFileError(
                f"This {type(estimator).__name__} is not fitted yet, so there is nothing to save; call fit first."
            ) from None


def save_model(estimator, model_dir, *, card: dict, onnx: bytes | None = None) -> Path:
    """Save a fitted estimator and its card into ``model_dir`` (created if needed); ``onnx``, a torch module's graph
    whose sha256 the card names (``onnx_sha256``), is written with them as ``model.onnx``."""
    model_dir = checked_path(model_dir, "model_dir")
    if not isinstance(card, dict):
        raise ModelFileError(f"card must be a dict of what to record with the model, got {type(card).__name__}.")
    # The weights and the card are made and checked before the folder: a refused model leaves nothing behind.
    weights_file, data, extra = _serialise(estimator)
    full_card = {
        **card,
        **extra,
        "weights_file": weights_file,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "format_version": FORMAT_VERSION,
    }
    full_card.pop("card_sha256", None)  # a card passed on from a loaded model: its checksum is recomputed
    try:
        full_card["card_sha256"] = card_sha256(full_card)
        text = json.dumps(full_card, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:  # NaN, infinity or an object JSON has no form for
        raise ModelFileError(
            f"The model card holds a value JSON cannot store ({exc}); pass numbers, strings, lists and dicts."
        ) from None
    check_card_to_save(text.encode(), model_dir / CARD_FILE)  # never write a card that read_card would refuse
    check_save_target(model_dir)  # a folder or another tool's file in the way: found before anything is written
    files = {**({ONNX_FILE: onnx} if onnx is not None else {}), weights_file: data, CARD_FILE: text.encode()}
    named = {*files, *([ONNX_FILE] if "onnx_sha256" in full_card else [])}  # and an ONNX the caller wrote
    try:  # a folder made for a save that fails (a full disk) is removed again, not left behind empty
        with folders_made(model_dir), locked_folder(model_dir):  # two saves into one folder: one after the other
            # A directory keeps one model. First go evaluate's figures: a failed save loses only those, not the model.
            remove_stale(model_dir, keep={CARD_FILE, SKOPS_FILE, SAFETENSORS_FILE, ONNX_FILE})
            # All written before any replaces the old one: a save killed or out of space leaves the old model whole.
            atomic_write_together(model_dir, files)
            # Drop what a different kind of model saved here before: the other format's weights, a module's ONNX.
            for other in (SKOPS_FILE, SAFETENSORS_FILE, ONNX_FILE):
                if other not in named:
                    (model_dir / other).unlink(missing_ok=True)
    except OSError as exc:
        raise ModelFileError(
            f"Cannot write the model into {model_dir} ({exc.strerror}); choose a folder you can write to."
        ) from None
    return model_dir


def _missing(model_dir: Path) -> ModelFileError:
    """A model folder that is not there; a bare name whose default folder holds a model (``evaluate knn-deskew``
    after ``train knn-deskew``) is sent to that folder, not told to train the model again."""
    if len(model_dir.parts) == 1 and not model_dir.is_absolute():
        with contextlib.suppress(ModelFileError):  # an $XDG_DATA_HOME of no use: the plain sentence
            saved = default_model_dir(model_dir.name)
            if (saved / CARD_FILE).is_file():
                return ModelFileError(
                    f"There is no folder {model_dir} here, but `mnistlab train {model_dir.name}` saved a model in "
                    f"{saved}; pass that folder."
                )
    if model_dir.is_symlink():  # a loop, or a target gone: the folder is not "missing" to its user
        return ModelFileError(f"{model_dir} is a link to nothing (a loop, or its target is gone); point it at a model.")
    return ModelFileError(
        f"Model directory {model_dir} does not exist; train one with `mnistlab train RECIPE --out {model_dir}`."
    )


def read_card(model_dir) -> dict:
    """Read and check ``model.json`` (schema, checksum, weights file name) without touching the weights."""
    if not isinstance(model_dir, (str, os.PathLike)):
        raise ModelFileError(f"A model directory is a path, got {type(model_dir).__name__}; pass the folder's path.")
    model_dir = checked_path(model_dir, "model_dir")
    if model_dir.exists() and not model_dir.is_dir():
        raise ModelFileError(
            f"{model_dir} is a file, not a model directory; pass the folder that `mnistlab train` wrote."
        )
    if not model_dir.is_dir():
        raise _missing(model_dir)
    card_path = model_dir / CARD_FILE
    try:
        text = read_regular(card_path, MAX_CARD_BYTES + 1)  # bounded: a card is kilobytes
    except FileNotFoundError:
        raise ModelFileError(
            f"{model_dir} has no {CARD_FILE}, so it is not a mnistlab model directory; point at one written by `mnistlab train`."
        ) from None
    except IsADirectoryError:
        raise ModelFileError(
            f"{card_path} is a folder, not a model card; point at a folder written by `mnistlab train`."
        ) from None
    except OSError as exc:
        raise ModelFileError(f"Cannot read {card_path} ({exc.strerror}); check its permissions.") from None
    if text is None:
        raise ModelFileError(
            f"{card_path} is not a regular file, so it is no model card; point at a folder written by `mnistlab train`."
        )
    if len(text) > MAX_CARD_BYTES:
        raise ModelFileError(
            f"{card_path} is larger than any card mnistlab writes ({MAX_CARD_BYTES // 2**20} MiB); retrain the model."
        )
    return parse_card(text, card_path)


def refuse_other_classes(card: dict, model_dir) -> dict:
    """``card``, unless it is of a model trained on a registered dataset whose classes are no digits (Fashion-MNIST's
    clothes, numbered 0-9 as digits are): its class 5, Sandal, would be answered as the digit 5. A folder of IDX
    files (its card records where: ``data_dir``) holds digits 0-9, whatever its name."""
    names = registered_class_names(card.get("dataset"), card.get("data_dir"))
    if names is not None and names != DIGIT_NAMES:
        raise ModelFileError(
            f"{model_dir} was trained on {card['dataset']}, whose classes are {', '.join(names[:3])}, ..., not "
            "digits, so it cannot read digits; answer with a model trained on digits, such as MNIST's."
        )
    return card


def load_model(model_dir) -> tuple[Any, dict]:
    """Load ``(estimator, card)`` from a directory written by ``save_model``.

    Raises ModelFileError for a missing directory or file, another format
    version, weights whose sha256 differs from the card's, or types outside
    the allow-list.
    """
    model_dir = followed_link(home_path(model_dir, "model_dir"))  # "~/models/knn" at home; a link followed once
    with locked_folder(model_dir, shared=True):  # a save meanwhile: its card beside weights it did not write
        card = read_card(model_dir)  # first: it says what is wrong with a path that is none
        data = read_weights(Path(model_dir) / card["weights_file"], card)
    model_dir = Path(model_dir)
    weights_path = model_dir / card["weights_file"]
    if card["weights_file"] == SAFETENSORS_FILE:
        from mnistlab.models.cnn.config import check_config  # torch: only when a CNN is loaded

        check_config(card["config"], str(model_dir / CARD_FILE))
        return cnn_from_bytes(data, card["config"], source=str(weights_path)), card
    return load_skops(data, weights_path), card


def find_best_model() -> Path | None:
    """The saved model under ``models_root()`` with the highest test accuracy on MNIST, or None; a model of other
    data (Fashion-MNIST, a folder, arrays) was scored on another test set, so its accuracy is not ranked."""
    best, best_acc = None, -1.0
    root = models_root()
    if not root.is_dir():
        return None
    for card_path in sorted(root.glob(f"*/{CARD_FILE}")):
        try:
            card = read_card(card_path.parent)
        except ModelFileError:
            continue  # stale or foreign folders are skipped, not fatal
        acc = (card.get("metrics") or {}).get("test_accuracy")
        on_mnist = card.get("dataset", "mnist") == "mnist" and "data_dir" not in card  # older cards: MNIST's
        if on_mnist and isinstance(acc, (int, float)) and acc > best_acc:
            best, best_acc = card_path.parent, float(acc)
    return best


# --- CNNs: safetensors weights and a JSON config ------------------------------


def is_cnn(estimator) -> bool:
    """Whether ``estimator`` is a ``CNNClassifier``; never imports torch (no CNN exists before its module is imported)."""
    module = sys.modules.get("mnistlab.models.cnn.estimator")
    return module is not None and isinstance(estimator, module.CNNClassifier)


def cnn_to_bytes(estimator, *, embed_config: bool = False) -> tuple[bytes, dict]:
    """A fitted ``CNNClassifier`` as (safetensors bytes, JSON-able config).

    ``embed_config`` also stores the config in the file's metadata (key "config"),
    so that the bytes alone rebuild the estimator with ``cnn_from_bytes(data)``.
    """
    if not hasattr(estimator, "model_"):
        raise ModelFileError(
            f"This {type(estimator).__name__} is not fitted yet, so there is nothing to save; call fit first."
        )
    # .contiguous(): channels-last conv weights would otherwise reach safetensors
    # as strided numpy views, whose raw buffer is in the wrong order.
    tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in estimator.model_.state_dict().items()}
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in estimator.get_params().items()}  # np.int64
    params.pop("callback")
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a RandomState object; the member seeds below still apply
    if params.get("module") is not None:  # a user's module: its code is not in the file, only its class is named
        params["module"] = f"{type(params['module']).__module__}.{type(params['module']).__qualname__}"
    classes = estimator.classes_  # pandas' text labels are objects to numpy: saved as the text they are
    classes = np.asarray(classes.tolist()) if classes.dtype == object else classes
    config = {
        "estimator": type(estimator).__name__,
        "params": params,
        "classes": classes.tolist(),
        "classes_dtype": classes.dtype.str,
        "n_features_in": int(estimator.n_features_in_),
        "image_shape": list(estimator.image_shape_),
        "seeds": estimator.seeds_,
        "n_threads": estimator.n_threads_,
        "n_epochs": estimator.n_epochs_,
        "train_seconds": estimator.train_seconds_,
        "history": estimator.history_,
    }
    from mnistlab.models.cnn.config import check_saveable  # torch is loaded: a CNN exists

    check_saveable(tensors, json.loads(json.dumps(config)), estimator)  # never save what load refuses
    return save(tensors, metadata={"config": json.dumps(config)} if embed_config else None), config


def cnn_from_bytes(data: bytes, config: dict | None = None, *, source: str = "The CNN file"):
    """The fitted ``CNNClassifier`` of ``cnn_to_bytes``; ``config`` None reads it from the file's metadata.

    The config is checked against its schema and the weights against the net
    it describes before any net is built (``models.cnn.config``). A CNN of the
    user's own torch module is refused in one sentence: only its class name was
    saved, not its code. ``source`` names the file in the ModelFileError raised
    for unreadable, mismatched or unbuildable bytes.
    """
    import torch  # seconds to import: only when a CNN is loaded (as is the estimator below)

    from mnistlab.models.cnn.config import check_config, check_tensors
    from mnistlab.models.cnn.estimator import CNNClassifier, build_model

    try:
        tensors = load(data)
        if config is None:
            config = json.loads(_safetensors_metadata(data)["config"])
    except Exception as exc:  # safetensors raises its own errors on damaged bytes
        raise ModelFileError(f"{source} is not a readable safetensors file ({exc}); retrain the model.") from None
    check_config(config, source)
    if config["params"].get("module") is not None:  # the schema let through only the name of the module's class
        raise ModelFileError(
            f"{source} holds the weights of your own torch module {config['params']['module']}, whose code is not "
            "in the model directory; use its model.onnx with mnistlab.OnnxPredictor, or rebuild the module and load the weights."
        )
    est = CNNClassifier(**config["params"])
    est.classes_ = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
    est.n_features_in_ = config["n_features_in"]
    est.image_shape_ = tuple(config["image_shape"])
    est.seeds_ = list(config["seeds"])
    est.n_threads_ = config["n_threads"]
    est.n_epochs_ = config["n_epochs"]
    est.train_seconds_ = config["train_seconds"]
    est.history_ = list(config["history"])
    with torch.device("meta"):  # shapes without memory: the real net is built once they match the file's
        skeleton = build_model(est, device="meta")
    check_tensors(skeleton, tensors, source)
    est.model_ = build_model(est)
    est.model_.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()})
    return est


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file: its header is 8 bytes of length, then JSON."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__") or {}
