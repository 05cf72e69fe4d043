"""A data set as a folder of four IDX files, written for a test: what `--data-dir`, `MNISTLAB_DATA` and a
registered data set's mirror hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.data.idx import write_idx
from mnistlab.data.registry import DATASETS, ROLES
from mnistlab.errors import ParameterError
from mnistlab.testing._checks import check_count, check_rng

__all__ = ["random_idx_arrays", "write_idx_folder"]


def random_idx_arrays(rng: np.random.Generator, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images, their labels 0-9 in turn: each role of ``ROLES`` (``train_images``...)."""
    check_rng(rng)
    n_train, n_test = check_count(n_train, "n_train"), check_count(n_test, "n_test")
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_idx_folder(
    folder: str | Path, arrays: dict[str, np.ndarray], dataset: str = "mnist", *, gzip: bool = True
) -> Path:
    """Each role's array in ``folder`` (made if missing), under the file name ``dataset`` publishes it under
    (MNIST's: ``train-images-idx3-ubyte.gz``...; ``gzip=False``: the same names without ``.gz``, the files not
    compressed); labels as uint8, as IDX files hold them (whole numbers 0-255, else a ``ParameterError``: one
    out of range is refused, not wrapped). Images are written in their own dtype. Returns the folder."""
    if dataset not in DATASETS:
        raise ParameterError("dataset", f"{{param}} must be one of {', '.join(DATASETS)}, not {dataset!r}.")
    if not isinstance(gzip, bool | np.bool_):  # "no" is truthy: the files were compressed
        raise ParameterError("gzip", f"{{param}} must be True or False, got {gzip!r}.")
    missing = [role for role in ROLES if role not in arrays]
    if missing:
        raise ParameterError("arrays", f"{{param}} lacks {', '.join(missing)}; give all four of {', '.join(ROLES)}.")
    checked = {role: np.ascontiguousarray(arrays[role]) for role in ROLES}  # all checked before a file is written
    checked.update({role: _uint8_labels(role, checked[role]) for role in ROLES if role.endswith("labels")})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for role in ROLES:
        name = DATASETS[dataset].files[role]
        write_idx(folder / (name if gzip else name.removesuffix(".gz")), checked[role])
    return folder


def _uint8_labels(role: str, labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint8, or a clear error for one that uint8 would change (300, -1, 2.7, "3")."""
    as_uint8 = labels.astype(np.uint8) if labels.dtype.kind in "buif" else None
    if as_uint8 is None or not np.array_equal(as_uint8, labels):
        raise ParameterError(
            "arrays", f"{{param}}['{role}'] must hold whole numbers 0-255, as an IDX label file holds them."
        )
    return as_uint8
