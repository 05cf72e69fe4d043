"""Find, verify, download and cache MNIST-format datasets.

Lookup order for a registered dataset: an explicit ``data_dir``; ``$MNISTLAB_DATA``
(a folder of IDX files, or of ``<name>/`` subfolders); the user cache
(``$XDG_CACHE_HOME/mnistlab``, else ``~/.cache/mnistlab``); Debian's
``/usr/share/datasets/<name>/``; then the public mirrors. Files are verified by
the sha256 of their *decompressed* bytes, which holds whichever mirror
compressed them. After the first verified load the arrays are kept as ``.npy``
files that ``np.load(mmap_mode="r")`` opens in milliseconds; they are rebuilt
when the source files change (size or mtime).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._errors import ChecksumError, DatasetError, DownloadError, IDXFormatError
from ._atomic import atomic_write_bytes, atomic_writer
from ._idx import parse_idx, read_idx

__all__ = ["DatasetSpec", "DATASETS", "ROLES", "find_idx_files", "cache_root", "download_dataset", "locate", "load_arrays"]

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_DEFAULT_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    url: str
    sha256: dict[str, str]  # role -> sha256 of the decompressed IDX bytes
    mirrors: tuple[str, ...]  # base URLs, tried in order
    target_names: tuple[str, ...] = tuple(str(i) for i in range(10))
    files: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_NAMES))


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        description="MNIST handwritten digits (LeCun, Cortes, Burges): 60,000 training and 10,000 test images, 28x28 grey, white ink on black.",
        url="http://yann.lecun.com/exdb/mnist/",
        sha256={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        # torchvision's mirror first, then TensorFlow's, then the original site.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        description="Fashion-MNIST (Zalando Research): 60,000 training and 10,000 test images of clothing, 28x28 grey, in MNIST's format.",
        url="https://github.com/zalandoresearch/fashion-mnist",
        sha256={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ),
        target_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}

# Other spellings of the four files found in the wild (raw, dotted, "test" for "t10k").
_PATTERNS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte", "test-images-idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte", "test-labels-idx1-ubyte"),
}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnistlab"


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (``.gz`` or raw), or None if any is missing."""
    found = {}
    for role, stems in _PATTERNS.items():
        for stem in stems:
            hits = [folder / (stem + ext) for ext in (".gz", "")]
            hit = next((p for p in hits if p.is_file()), None)
            if hit:
                found[role] = hit
                break
        else:
            return None
    return found


def decompressed_bytes(path: Path) -> bytes:
    """The file's content after gunzip (or the raw file)."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXFormatError(f"{path}: cannot decompress ({exc}); the file is truncated or corrupt.") from None


def sha256_decompressed(path: Path) -> str:
    """sha256 of the file's content after gunzip (or of the raw file)."""
    return hashlib.sha256(decompressed_bytes(path)).hexdigest()


def _candidates(name: str, data_dir: Path | None) -> list[tuple[str, Path]]:
    """(kind, folder) pairs in lookup order; kind tells how strict a mismatch is."""
    if data_dir is not None:
        return [("explicit", Path(data_dir))]
    out = []
    env = os.environ.get("MNISTLAB_DATA")
    if env:
        out += [("env", Path(env) / name), ("env-flat", Path(env))]
    out.append(("cache", cache_root() / name))
    out.append(("system", Path("/usr/share/datasets") / name))
    return out


def locate(name: str, data_dir: Path | None = None) -> tuple[dict[str, Path], Checksums, list[str]]:
    """Find the four verified files of ``name``: (files, checksums, places searched).

    Checksums come from a fresh array-cache manifest when there is one (so a warm
    load hashes nothing), else from hashing the decompressed bytes. A flat
    ``$MNISTLAB_DATA`` folder may hold another dataset with the same file names
    (Fashion-MNIST uses MNIST's names), so there a folder whose files *all*
    disagree with the checksums is skipped, while a partial match means a
    corrupt copy and is an error.
    """
    spec = DATASETS[name]
    searched = []
    for kind, folder in _candidates(name, data_dir):
        searched.append(str(folder))
        files = find_idx_files(folder) if folder.is_dir() else None
        if files is None:
            if kind == "explicit":
                raise DatasetError(
                    f"{folder} does not hold the four IDX files (train-images, train-labels, t10k-images, t10k-labels); point --data-dir at the folder that does."
                )
            continue
        checksums = checksums_of(name, files)
        bad = [role for role in ROLES if checksums[role] != spec.sha256[role]]
        if not bad:
            return files, checksums, searched
        if kind == "env-flat" and len(bad) == len(ROLES):
            continue  # another dataset's files: keep looking
        raise ChecksumError(
            f"{files[bad[0]]} does not match the published sha256 of {name}'s {bad[0].replace('_', ' ')}; delete or replace the file (mnistlab then finds or downloads a good copy)."
        )
    return {}, Checksums(), searched


def checksums_of(name: str, files: dict[str, Path]) -> Checksums:
    """role -> sha256 of decompressed bytes, from a fresh cache manifest if present.

    When it has to hash, it keeps the decompressed bytes on the result
    (``.payloads``) so that a cold load parses them without a second gunzip.
    """
    manifest = _fresh_manifest(name, files)
    if manifest is not None:
        return Checksums(manifest["checksums"])
    payloads = {role: decompressed_bytes(files[role]) for role in ROLES}
    result = Checksums({role: hashlib.sha256(payloads[role]).hexdigest() for role in ROLES})
    result.payloads = payloads
    return result


class Checksums(dict):
    """role -> sha256; may carry the decompressed ``payloads`` it was computed from."""

    payloads: dict[str, bytes] | None = None


def download_dataset(
    name: str,
    dest: Path | None = None,
    *,
    mirrors: tuple[str, ...] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    timeout: float = 30.0,
) -> dict[str, Path]:
    """Download and verify the four files of ``name`` into ``dest`` (default: the cache).

    Each file is streamed to a temp file beside its final place and renamed only
    once its decompressed sha256 matches; a mirror serving bad or partial bytes is
    skipped for the next. ``progress(filename, done_bytes, total_bytes)`` is called
    as bytes arrive.
    """
    spec = DATASETS[name]
    dest = Path(dest) if dest is not None else cache_root() / name
    dest.mkdir(parents=True, exist_ok=True)
    mirrors = mirrors if mirrors is not None else _env_mirrors() + spec.mirrors
    out = {}
    for role in ROLES:
        fname = spec.files[role]
        final = dest / fname
        if final.is_file() and sha256_decompressed(final) == spec.sha256[role]:
            out[role] = final
            continue
        problems = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                _fetch_verified(url, final, spec.sha256[role], progress, timeout)
            except (OSError, http.client.HTTPException, ValueError, IDXFormatError, ChecksumError) as exc:
                problems.append(f"{url}: {exc}")
                continue
            out[role] = final
            break
        else:
            raise DownloadError(
                f"could not download a verified {fname} for {name} ({'; '.join(problems) or 'no mirrors'}); "
                f"check the network or put the four IDX files in a folder and set MNISTLAB_DATA to it."
            )
    return out


def _env_mirrors() -> tuple[str, ...]:
    value = os.environ.get("MNISTLAB_MIRRORS", "")
    return tuple(m for m in value.split() if m)


def _fetch_verified(url: str, final: Path, sha256: str, progress, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            # http.client raises IncompleteRead when the body ends before Content-Length.
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(final.name, done, total)
            if total is not None and done != total:
                raise OSError(f"connection closed after {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        try:
            got = sha256_decompressed(Path(tmp))
        except IDXFormatError:
            raise ChecksumError("served bytes are not a valid gzip stream (corrupt copy)") from None
        if got != sha256:
            raise ChecksumError(f"served bytes have sha256 {got[:12]}..., expected {sha256[:12]}...")
        os.replace(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- decoded array cache --------------------------------------------------------

def _stamp(files: dict[str, Path]) -> dict[str, list]:
    out = {}
    for role, p in files.items():
        st = p.stat()
        out[role] = [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return out


def _array_cache_dir(name: str, files: dict[str, Path]) -> Path:
    key = hashlib.sha256(str(files["train_images"].resolve().parent).encode()).hexdigest()[:16]
    return cache_root() / "arrays" / f"{name}-{key}"


def _fresh_manifest(name: str, files: dict[str, Path]) -> dict | None:
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
    manifest = _fresh_manifest(name, files)
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
        role: parse_idx(payloads[role], source=str(files[role])) if payloads else read_idx(files[role]) for role in ROLES
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
            raise IDXFormatError(f"{files[f'{split}_images']}: expected uint8 images of rank 3, got {img.dtype} of shape {img.shape}.")
        if lab.ndim != 1 or len(lab) != len(img):
            raise IDXFormatError(
                f"{files[f'{split}_labels']}: expected {len(img)} labels to match the images, got shape {lab.shape}."
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise IDXFormatError("train and test images differ in size; the four files do not belong together.")


