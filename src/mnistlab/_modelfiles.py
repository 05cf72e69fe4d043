"""Saved model directories: weights without pickle, plus a JSON card.

A model directory holds the weights (``model.skops`` for scikit-learn
pipelines, ``model.safetensors`` for CNNs) and ``model.json``, the card:
recipe, parameters, seed, data checksum, package versions, metrics, the
weights file name, its sha256 and ``format_version``. Loading checks the
version and the sha256 *before* deserialising anything, and skops only
rebuilds the types on an explicit allow-list, so a model directory from
elsewhere cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_bytes
from ._errors import ModelFileError

__all__ = [
    "FORMAT_VERSION",
    "TRUSTED_TYPES",
    "save_model",
    "load_model",
    "read_card",
    "models_root",
    "default_model_dir",
    "find_best_model",
]

FORMAT_VERSION = 1
CARD_FILE = "model.json"
SKOPS_FILE = "model.skops"
SAFETENSORS_FILE = "model.safetensors"

# Types that skops does not trust by default but that our classic recipes
# contain: our own stateless transformers and scikit-learn's tree structure.
# Exactly what `skops.io.get_untrusted_types` reports for the registered
# recipes (tests/test_modelfiles.py keeps this list honest). Anything else in
# a .skops file is refused.
TRUSTED_TYPES = (
    "mnistlab._transforms.Deskew",
    "mnistlab._transforms.PixelScaler",
    "sklearn.tree._tree.Tree",
)


def models_root() -> Path:
    """``$XDG_DATA_HOME/mnistlab/models``, else ``~/.local/share/mnistlab/models``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mnistlab" / "models"


def default_model_dir(recipe: str) -> Path:
    return models_root() / recipe


def _serialise(estimator) -> tuple[str, bytes, dict]:
    """Return (weights file name, weights bytes, extra card fields)."""
    if hasattr(estimator, "_export_state"):
        from safetensors.numpy import save

        tensors, config = estimator._export_state()
        return SAFETENSORS_FILE, save(tensors), {"format": "safetensors", "config": config}

    import skops.io as sio

    data = sio.dumps(estimator)
    unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if unknown:
        # Saving what load_model would refuse only moves the error to later.
        raise ModelFileError(
            f"Cannot save this model safely: it contains types outside mnistlab's allow-list ({', '.join(unknown)}); "
            "use a registered recipe or extend TRUSTED_TYPES after reviewing them."
        )
    return SKOPS_FILE, data, {"format": "skops"}


def save_model(estimator, model_dir, *, card: dict) -> Path:
    """Save a fitted estimator and its card into ``model_dir`` (created if needed)."""
    model_dir = Path(model_dir)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"Cannot create model directory {model_dir} ({exc.strerror}); choose a writable --out folder.") from None
    weights_file, data, extra = _serialise(estimator)
    full_card = {
        **card,
        **extra,
        "weights_file": weights_file,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "format_version": FORMAT_VERSION,
    }
    text = json.dumps(full_card, indent=2, sort_keys=True, allow_nan=False) + "\n"
    try:
        # Weights first: a crash in between leaves an old card whose sha256 no
        # longer matches, which load_model refuses, rather than a silent mix.
        atomic_write_bytes(model_dir / weights_file, data)
        atomic_write_bytes(model_dir / CARD_FILE, text.encode())
    except OSError as exc:
        raise ModelFileError(f"Cannot write the model into {model_dir} ({exc.strerror}); choose a writable --out folder.") from None
    # A directory keeps one model: drop the other format's weights if a
    # different kind of model was saved here before.
    for other in (SKOPS_FILE, SAFETENSORS_FILE):
        if other != weights_file:
            (model_dir / other).unlink(missing_ok=True)
    return model_dir


def read_card(model_dir) -> dict:
    """Read and check ``model.json`` (version, weights file name) without touching the weights."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(
            f"Model directory {model_dir} does not exist; train one with `mnistlab train RECIPE --out {model_dir}`."
        )
    card_path = model_dir / CARD_FILE
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{model_dir} has no {CARD_FILE}, so it is not a mnistlab model directory; point at one written by `mnistlab train`.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{card_path} is not valid JSON ({exc}); retrain the model with `mnistlab train`.") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{card_path} does not hold a JSON object; retrain the model with `mnistlab train`.")
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{model_dir} was saved in model format version {version!r}, but this mnistlab reads version "
            f"{FORMAT_VERSION}; retrain it with `mnistlab train {card.get('recipe', 'RECIPE')}`."
        )
    weights_file = card.get("weights_file")
    if weights_file not in (SKOPS_FILE, SAFETENSORS_FILE):
        # Only our two fixed names: a card must not point at arbitrary paths.
        raise ModelFileError(
            f"{card_path} names weights file {weights_file!r}, expected one of {SKOPS_FILE!r}, {SAFETENSORS_FILE!r}; retrain the model."
        )
    return card


def load_model(model_dir) -> tuple[Any, dict]:
    """Load ``(estimator, card)`` from a directory written by ``save_model``.

    Raises ModelFileError for a missing directory or file, another format
    version, weights whose sha256 differs from the card's, or types outside
    the allow-list.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    weights_path = model_dir / card["weights_file"]
    try:
        data = weights_path.read_bytes()
    except OSError:
        raise ModelFileError(f"{model_dir} has no readable {card['weights_file']}; retrain the model with `mnistlab train {card.get('recipe', 'RECIPE')}`.") from None
    if hashlib.sha256(data).hexdigest() != card.get("weights_sha256"):
        raise ModelFileError(
            f"{weights_path} does not match the sha256 recorded in {CARD_FILE}, so it was changed or corrupted; "
            "restore the original file or retrain the model."
        )
    if card["weights_file"] == SAFETENSORS_FILE:
        return _load_cnn(data, card, weights_path), card
    return _load_skops(data, weights_path), card


def _load_skops(data: bytes, weights_path: Path):
    import skops.io as sio

    try:
        unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as exc:  # skops raises assorted errors on a damaged archive
        raise ModelFileError(f"{weights_path} is not a readable skops file ({exc}); retrain the model.") from None
    if unknown:
        raise ModelFileError(
            f"{weights_path} contains types mnistlab does not trust ({', '.join(unknown)}); only load models written by mnistlab."
        )
    try:
        return sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise ModelFileError(f"{weights_path} could not be rebuilt ({type(exc).__name__}: {exc}); retrain the model.") from None


def _load_cnn(data: bytes, card: dict, weights_path: Path):
    from safetensors.numpy import load

    from ._cnn import CNNClassifier  # torch is imported only when a CNN is loaded

    try:
        tensors = load(data)
    except Exception as exc:
        raise ModelFileError(f"{weights_path} is not a readable safetensors file ({exc}); retrain the model.") from None
    return CNNClassifier._from_state(tensors, card.get("config", {}))


def find_best_model() -> Path | None:
    """The saved model under ``models_root()`` with the highest test accuracy, or None."""
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
        if isinstance(acc, (int, float)) and acc > best_acc:
            best, best_acc = card_path.parent, float(acc)
    return best
