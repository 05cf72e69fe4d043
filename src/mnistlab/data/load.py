"""``load_mnist`` and ``load_split``: the data in one call, shaped like ``fetch_openml``.

Unlike ``fetch_openml('mnist_784')``, ``data`` is always a numpy array (``X[0]``
is the first image, never a ``KeyError``), targets are integers, and a warm load
is a memory map of a cached ``.npy`` file.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnistlab.data.bunch import Bunch
from mnistlab.data.cache import fresh_manifest, load_arrays
from mnistlab.data.download import download_dataset
from mnistlab.data.home import expand_home, refuse_empty_path
from mnistlab.data.registry import DATASETS, ROLES
from mnistlab.data.seeds import check_seed
from mnistlab.data.sources import checksums_of, find_idx_files, locate, not_four_files
from mnistlab.errors import DatasetError, DownloadError, InputError, ParameterError

__all__ = ["load_mnist", "load_split", "KNOWN_DATASETS"]

KNOWN_DATASETS = (*DATASETS, "digits")
_DIGIT_NAMES = tuple(str(i) for i in range(10))  # the classes of a folder of IDX files that is not registered


def load_mnist(
    name: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    as_frame: bool = False,
    dtype=np.uint8,
    download: bool = True,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> Bunch:
    """Load an MNIST-format dataset, train then test, verified by checksum.

    Parameters
    ----------
    name : "mnist" (default), "fashion-mnist", "digits" (scikit-learn's bundled
        8x8 set), or None with ``data_dir`` to load any folder of four IDX files.
    data_dir : a folder holding the four IDX files (``.gz`` or raw).
    as_frame : also return ``frame``, a pandas DataFrame of the pixels plus a
        ``class`` column. ``data`` stays a numpy array either way.
    dtype : ``np.uint8`` (default: the values as published, 0-255 in IDX files but
        0-16 in scikit-learn's digits, which mnistlab's models read as faint 0-255
        ink: give them digits as floats) or a float dtype (scaled to 0-1).
    download : fetch from the public mirrors when no local copy is found.
    progress : ``progress(filename, done_bytes, total_bytes)`` during downloads.

    Returns
    -------
    Bunch with ``data`` (N x H*W), ``images`` (N x H x W view), ``target`` (int64),
    ``feature_names`` (pixel1..), ``target_names``, ``DESCR``, ``url`` and
    ``details`` (name, path, verified, checksums, data_sha256, n_train, n_test).
    The first ``details["n_train"]`` rows are the official training set.

    >>> int(load_mnist("digits").data.max()), float(load_mnist("digits", dtype=np.float32).data.max())
    (16, 1.0)
    """
    for param, flag in (("as_frame", as_frame), ("download", download)):
        if not isinstance(flag, bool | np.bool_):  # "no" is truthy: it went to the mirrors, or built a DataFrame
            raise ParameterError(param, f"{{param}} must be True or False, got {flag!r}.")
    if name is not None and not isinstance(name, str):
        raise DatasetError(
            f"A dataset is named by a string, got {type(name).__name__}; expected one of {', '.join(KNOWN_DATASETS)}."
        )
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be uint8 or a float dtype, got {dtype!r}.") from None
    if dtype.kind not in "uf" or (dtype.kind == "u" and dtype != np.uint8):
        raise InputError(f"dtype must be uint8 or a float dtype, got {dtype}.")
    if name == "digits":
        if data_dir is not None:
            raise ParameterError(
                "data_dir",
                "{param} does not apply to digits, which come with scikit-learn; drop {param}, or leave out the "
                "name digits to load the folder as it is.",
            )
        images, labels, details, spec_info = _digits()
    else:
        images, labels, details, spec_info = _idx_dataset(name, data_dir, download, progress)

    if dtype.kind == "f":
        images = np.asarray(images, dtype) / dtype.type(images_max(details))
    n, h, w = images.shape
    data = images.reshape(n, h * w)
    target = np.asarray(labels, np.int64)
    bunch = Bunch(
        data=data,
        target=target,
        images=images,
        feature_names=[f"pixel{i}" for i in range(1, h * w + 1)],
        target_names=list(spec_info["target_names"]),
        DESCR=spec_info["description"],
        url=spec_info["url"],
        details=details,
    )
    if as_frame:
        import pandas as pd

        frame = pd.DataFrame(np.asarray(data), columns=bunch.feature_names)
        frame["class"] = pd.Categorical(target)
        bunch.frame = frame
    return bunch


def images_max(details: dict) -> int:
    """16 for scikit-learn's digits, 255 for IDX files: a folder of them named digits is not scikit-learn's (it is
    not verified), and its 0-255 pixels read as 0-16 ones were scaled past white."""
    return 16 if details["name"] == "digits" and details["verified"] else 255


def _idx_dataset(name, data_dir, download, progress):
    # ~ is the home folder, as in scikit-learn's data_home: a shell leaves it as it is in --data-dir=~/mnist.
    if data_dir is not None:
        refuse_empty_path(data_dir, "data_dir")  # as the CLI refuses an empty --data-dir
        data_dir = expand_home(
            data_dir, lambda why: ParameterError("data_dir", f"{{param}} {data_dir} {why}; give its full path.")
        )
    if name is None and data_dir is not None:
        return _any_folder(data_dir)
    name = "mnist" if name is None else name  # "" (an unset variable) is no name: refused below, not MNIST
    if name not in DATASETS:
        raise DatasetError(
            f"Unknown dataset {name!r}; expected one of {', '.join(KNOWN_DATASETS)}, or --data-dir DIR for any folder of IDX files."
        )
    files, checksums, searched = locate(name, data_dir)
    if not files:
        if not download:
            raise DatasetError(_not_found(name, searched))
        try:
            files = download_dataset(name, progress=progress)
        except DownloadError as exc:
            raise DatasetError(_not_found(name, searched, exc.reason)) from None
        checksums = dict(DATASETS[name].sha256)
    spec = DATASETS[name]
    images, labels, manifest = load_arrays(name, files, checksums, n_classes=len(spec.target_names))
    details = _details(name, files, manifest, verified=True)
    return (
        images,
        labels,
        details,
        {"target_names": spec.target_names, "description": spec.description, "url": spec.url},
    )


def _any_folder(folder: Path):
    """A folder of four IDX files: a registered dataset if the checksums say so, else custom."""
    files = find_idx_files(folder)
    if files is None:
        raise DatasetError(not_four_files(folder))
    name = folder.resolve().name or "custom"  # "." and ".." by the folder they are, not "custom" and ".."
    # A folder loaded before as a registered dataset has that dataset's manifest: then a warm load hashes no source.
    known = (fresh_manifest(spec.name, files) for spec in DATASETS.values())
    checksums = next((dict(m["checksums"]) for m in known if m is not None), None) or checksums_of(name, files)
    for spec in DATASETS.values():
        if all(checksums[r] == spec.sha256[r] for r in ROLES):
            images, labels, manifest = load_arrays(spec.name, files, checksums, n_classes=len(spec.target_names))
            info = {"target_names": spec.target_names, "description": spec.description, "url": spec.url}
            return images, labels, _details(spec.name, files, manifest, verified=True), info
    # Any other folder holds digits: the ten classes 0-9, so a label of 200 is refused, not an 11th class.
    images, labels, manifest = load_arrays(name, files, checksums, n_classes=len(_DIGIT_NAMES))
    info = {
        "target_names": list(_DIGIT_NAMES),
        "description": f"IDX dataset from {folder} (not a registered dataset, so not verified against published checksums).",
        "url": str(folder),
    }
    return images, labels, _details(name, files, manifest, verified=False), info


def _details(name, files, manifest, verified):
    checksums = manifest["checksums"]
    return {
        "name": name,
        "path": str(files["train_images"].parent.resolve()),  # the folder given: its files may link elsewhere
        "files": {role: str(files[role]) for role in ROLES},
        "verified": verified,
        "checksums": checksums,
        "data_sha256": hashlib.sha256("".join(checksums[r] for r in ROLES).encode()).hexdigest(),
        "n_train": manifest["n_train"],
        "n_test": manifest["n_test"],
    }


def _not_found(name: str, searched: list[str], failed: str | None = None) -> str:
    places = "; ".join(searched)
    if failed is None:
        return f"{name} was not found (searched {places}); set {_FOLDER}, or connect to the network to download them."
    return (
        f"{name} was not found (searched {places}) and could not be downloaded ({failed}); check the network, "
        f"or set {_FOLDER}."
    )


# Where the data is when it is not found: train, evaluate, compare and export have no --data-dir (it was advised).
_FOLDER = (
    "MNISTLAB_DATA to a folder holding the four IDX files (data info and show also take it as --data-dir, Python "
    "as data_dir=)"
)


def _digits():
    """scikit-learn's bundled 8x8 digits: instant and offline, for smoke runs."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = raw.images.astype(np.uint8)  # values 0..16
    labels = raw.target
    n_test = 360  # the last fifth, kept in order like MNIST's official split
    digest = hashlib.sha256(images.tobytes() + labels.astype(np.int64).tobytes()).hexdigest()
    details = {
        "name": "digits",
        "path": "sklearn.datasets.load_digits",
        "files": {},
        "verified": True,
        "checksums": {"bundled": digest},
        "data_sha256": digest,
        "n_train": len(labels) - n_test,
        "n_test": n_test,
    }
    info = {
        "target_names": list(_DIGIT_NAMES),
        "description": "scikit-learn's bundled 8x8 handwritten digits (1,797 images, pixel values 0-16).",
        "url": "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    }
    return images, labels, details, info


def load_split(
    name: str | None = None,
    *,
    split: str = "official",
    test_size: int | float | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    dtype=np.uint8,
    bunch=None,
):
    """``X_train, X_test, y_train, y_test`` with X as N x H*W arrays.

    ``official``: the published split (first ``n_train`` rows / the rest).
    ``random``: a stratified, seeded split of all images; ``test_size`` is a
    count or a fraction (default: the official test size). ``bunch``: what
    ``load_mnist`` returned, split instead of loading (``name``, ``data_dir``
    and ``dtype`` are then not used).
    """
    if split not in ("official", "random"):
        raise InputError(f"Unknown split {split!r}; expected one of official, random.")
    if bunch is not None and not all(hasattr(bunch, key) for key in ("data", "target", "details")):
        raise InputError(f"bunch must be what load_mnist returned, got {type(bunch).__name__}; or leave it out.")
    # Before the data loads (a download, on a fresh machine), as far as they can be checked without it.
    if split == "official" and test_size is not None:
        raise InputError("test_size applies to the random split only; drop it or use split='random'.")
    if split == "random":
        check_seed(seed)
    b = bunch if bunch is not None else load_mnist(name, data_dir=data_dir, dtype=dtype)
    X, y = b.data, b.target
    n_train = b.details["n_train"]
    if split == "official":
        return X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    from sklearn.model_selection import train_test_split

    test_size = len(y) - n_train if test_size is None else _checked_test_size(test_size, len(y))
    _check_stratifiable(y, getattr(b, "target_names", ()), test_size)  # a cluster's bunch carries no names
    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=int(seed))


def _check_stratifiable(y: np.ndarray, target_names, test_size: int | float) -> None:
    """A stratified split puts each class on both sides: each needs two images or more, each side one per class."""
    counts = np.bincount(np.asarray(y))
    n, k = len(y), int(np.count_nonzero(counts))
    n_test = math.ceil(test_size * n) if isinstance(test_size, float) else int(test_size)  # as scikit-learn counts
    if not k <= n_test <= n - k:  # only the default, the official test size, can be so small
        raise ParameterError(
            "test_size",
            f"{{param}} is {n_test}, too few or too many to put an image of each of the {k} classes on both sides; "
            f"give a {{param}} between {max(k, 10)} and {n - max(k, 10)}.",
        )
    lonely = np.flatnonzero(counts == 1)
    if lonely.size:
        c = int(lonely[0])
        name = str(c) if c >= len(target_names) or target_names[c] == str(c) else f"{c} ({target_names[c]})"
        raise ParameterError(
            "split",
            f"{{param}}='random' keeps every class on both sides, so it needs two images or more of each, but class "
            f"{name} has only one; add images of class {name}, or use {{param}}='official'.",
        )


def _checked_test_size(test_size, n: int) -> int | float:
    """``test_size`` (a count, or a fraction of ``n`` images) if it leaves 10 images or more on each side."""
    if isinstance(test_size, (float, np.floating)) and not 0 < test_size < 1:
        raise ParameterError("test_size", f"{{param}} as a fraction must be between 0 and 1, got {test_size}.")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer, float, np.floating)):
        raise ParameterError("test_size", f"{{param}} must be a count of images or a fraction, got {test_size!r}.")
    count = math.ceil(test_size * n) if isinstance(test_size, (float, np.floating)) else int(test_size)
    if not 10 <= count <= n - 10:
        raise ParameterError(
            "test_size",
            f"{{param}} must leave 10 images or more on each side: a count between 10 and {n - 10}, or a fraction "
            f"that gives one, got {test_size}.",
        )
    return float(test_size) if isinstance(test_size, (float, np.floating)) else count
