"""Parameter checks of ``CNNClassifier``: each error names the parameter, the value and what it expects."""

from __future__ import annotations

import re

import numpy as np

from mnistlab.errors import InputError, RecipeError
from mnistlab.models.cnn.augment import AUGMENTATIONS
from mnistlab.models.cnn.net import ARCHITECTURES

__all__ = [
    "BACKENDS",
    "INPUTS",
    "MAX_EPOCHS",
    "MAX_MEMBERS",
    "MAX_THREADS",
    "choice",
    "check_number",
    "check_params",
    "check_classes",
]

BACKENDS = ("torch", "onnxruntime")
# What the members read: the digits as written, deskewed (``net.deskew``),
# or "mixed": members 2, 4, ... read deskewed digits, the others raw ones.
INPUTS = ("raw", "deskewed", "mixed")
MAX_MEMBERS = 32  # the largest recipe averages 10 nets; more buys nothing measurable
MAX_THREADS = 256  # torch threads: more than any machine mnistlab runs on has cores
MAX_FLOAT32 = float(np.finfo(np.float32).max)  # the largest lr or weight_decay torch can hold
MAX_EPOCHS = 1000  # the longest recipe trains 15; a bound on the cost of a typo (100000) before it starts


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise RecipeError(f"{name} got {value!r}, expected one of: {', '.join(map(repr, allowed))}.")


def check_number(name: str, value, low, high=None, *, integer=False) -> None:
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    # An integer is finite (np.isfinite refused one past 64 bits in a TypeError: epochs=10**30 in a spec file).
    ok = isinstance(value, kind) and not isinstance(value, bool) and _finite(value) and value >= low
    if not ok or (high is not None and value > high):
        expected = f"{'an integer' if integer else 'a finite number'} >= {low}" + (f" and <= {high}" if high else "")
        raise RecipeError(f"{name} got {value!r}, expected {expected}.")


def _finite(value) -> bool:
    return isinstance(value, int | np.integer) or bool(np.isfinite(value))


def check_params(p: dict) -> None:
    """Raise RecipeError for the first of ``CNNClassifier.get_params()`` that fit cannot use."""
    choice("arch", p["arch"], tuple(ARCHITECTURES))
    choice("augment", p["augment"], tuple(AUGMENTATIONS))
    choice("backend", p["backend"], BACKENDS)
    choice("inputs", p["inputs"], INPUTS)
    choice("nesterov", p["nesterov"], (True, False))
    check_number("epochs", p["epochs"], 1, MAX_EPOCHS, integer=True)
    check_number("batch_size", p["batch_size"], 1, integer=True)
    check_number("n_members", p["n_members"], 1, MAX_MEMBERS, integer=True)
    for name in ("lr", "weight_decay"):  # torch's optimizers hold them as float32: past it, a RuntimeError
        check_number(name, p[name], 0, MAX_FLOAT32)
    for name in ("label_smoothing", "dropout", "momentum", "warmup_fraction", "validation_fraction"):
        check_number(name, p[name], 0, 1)
    if p["nesterov"] and p["momentum"] <= 0:
        raise RecipeError("nesterov=True needs a momentum above 0; set momentum > 0 or nesterov=False.")
    if p["target"] is not None:
        check_number("target", p["target"], 0, 1)
        if not 0 < p["validation_fraction"] < 1:  # the target is checked on a held-out part, and trained beside it
            raise RecipeError(
                f"validation_fraction got {p['validation_fraction']!r}; with a target it must be above 0 and below 1."
            )
    if not isinstance(p["verbose"], bool):  # True and False, as scikit-learn's estimators take them, or a level
        check_number("verbose", p["verbose"], 0, integer=True)
    if p["callback"] is not None and not callable(p["callback"]):
        raise RecipeError(f"callback got {p['callback']!r}, expected a function taking each epoch's row, or None.")
    if p["n_threads"] is not None:
        check_number("n_threads", p["n_threads"], 1, MAX_THREADS, integer=True)
    if p["n_jobs"] not in (-1, None):  # None: one, as scikit-learn's estimators read it
        check_number("n_jobs", p["n_jobs"], 1, integer=True)
    seed = p["random_state"]
    if not (seed is None or isinstance(seed, np.random.RandomState)):
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
            raise RecipeError(
                f"random_state got {seed!r}, expected an integer seed from 0 to {2**32 - 1}, a RandomState or None."
            )
    device = p["device"]
    # "cuda:abc" or "cuda:-1" would pass a prefix check and fail inside torch, after the data was prepared.
    if not (device in ("auto", "cpu") or (isinstance(device, str) and re.fullmatch(r"cuda(:[0-9]+)?", device))):
        raise RecipeError(f"device got {device!r}, expected one of: 'auto', 'cpu', 'cuda', 'cuda:N'.")


def check_classes(classes: np.ndarray, max_classes: int, max_chars: int) -> None:
    """Refuse training labels a CNN's model file cannot hold (``config``'s limits): more than ``max_classes`` of
    them, or text labels over ``max_chars`` characters. They were trained on, then refused by ``save_model``."""
    if len(classes) > max_classes:
        raise InputError(
            f"Training data holds {len(classes):,} classes, more than the {max_classes:,} a CNN's model file holds; "
            "train on fewer classes (group rare ones together)."
        )
    longest = max((len(c) for c in classes.tolist() if isinstance(c, str)), default=0)
    if longest > max_chars:
        raise InputError(
            f"A class label of {longest} characters is longer than the {max_chars} a CNN's model file holds; "
            "use shorter labels (a code, with the long names kept beside it)."
        )
