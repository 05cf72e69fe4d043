"""The user cache folder and the decoded-array cache.

After the first verified load the arrays are kept as ``.npy`` files that
``np.load(mmap_mode="r")`` opens in milliseconds, with a manifest recording
which source files (path, size, mtime) and checksums they came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_bytes, atomic_writer
from mnistlab.data.idx import parse_idx, read_idx
from mnistlab.data.registry import ROLES
from mnistlab.errors import IDXFormatError

__all__ = ["cache_root", "load_arrays", "fresh_manifest"]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnistlab"


def _stamp(files: dict[str, Path]) -> dict[str, list]:
    out = {}
    for role, p in files.items():
        st = p.stat()
        out[role] = [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return out


def _array_cache_dir(name: str, files: dict[str, Path]) -> Path:
    key = hashlib.sha256(str(files["train_images"].resolve().parent).encode()).hexdigest()[:16]
    return cache_root() / "arrays" / f"{name}-{key}"


def fresh_manifest(name: str, files: dict[str, Path]) -> dict | None:
    """The cache manifest if it was built from exactly these files, unchanged since."""
    try:
        manifest = json.loads((_array_cache_dir(name, files) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != 1 or manifest.get("stamp") != _stamp(files):
        return None
    return manifest


def load_arrays(name: str, files: dict[str, Path], checksums: dict[str, str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N, H, W) and labels (N,) for train then test, memory-mapped from the cache.

    ``checksums`` are those the caller verified (see ``locate``); they are stored
    in the manifest so the next load needs no hashing.
    """
    cdir = _array_cache_dir(name, files)
    manifest = fresh_manifest(name, files)
    if manifest is not None and manifest["checksums"] == checksums:
        try:
            images = np.load(cdir / "images.npy", mmap_mode="r")
            labels = np.load(cdir / "labels.npy", mmap_mode="r")
            if len(images) == len(labels) == manifest["n_train"] + manifest["n_test"]:
                return images, labels, manifest
        except (OSError, ValueError):
            pass  # damaged cache: rebuild below

    payloads = getattr(checksums, "payloads", None)
    arrays = {
        role: parse_idx(payloads[role], source=str(files[role])) if payloads else read_idx(files[role])
        for role in ROLES
    }
    _check_consistent(arrays, files)
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    manifest = {
        "format": 1,
        "name": name,
        "stamp": _stamp(files),
        "checksums": dict(checksums),
        "n_train": len(arrays["train_labels"]),
        "n_test": len(arrays["test_labels"]),
    }
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        # Arrays first, manifest last: a crash in between leaves a stale manifest, never a wrong one.
        _atomic_save_npy(cdir / "images.npy", images)
        _atomic_save_npy(cdir / "labels.npy", labels)
        atomic_write_bytes(cdir / "manifest.json", json.dumps(manifest, indent=1).encode())
    except OSError:
        pass  # a read-only cache only costs speed
    return images, labels, manifest


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_writer(path) as f:
        np.save(f, arr, allow_pickle=False)


def _check_consistent(arrays: dict[str, np.ndarray], files: dict[str, Path]) -> None:
    for split in ("train", "test"):
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if img.ndim != 3 or img.dtype != np.uint8:
            raise IDXFormatError(
                f"{files[f'{split}_images']}: expected uint8 images of rank 3, got {img.dtype} of shape {img.shape}."
            )
        if lab.ndim != 1 or len(lab) != len(img):
            raise IDXFormatError(
                f"{files[f'{split}_labels']}: expected {len(img)} labels to match the images, got shape {lab.shape}."
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise IDXFormatError("train and test images differ in size; the four files do not belong together.")
