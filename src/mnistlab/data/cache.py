"""The user cache folder and the decoded-array cache, which proves itself on every load.

After the first verified load the arrays are kept as ``images.npy`` and
``labels.npy``, memory-mapped on later loads, beside a ``manifest.json`` that
records the source files they came from (path, size, mtime, inode, ctime, sha256). Nothing
in the folder is trusted as found: the manifest carries the sha256 of its own
content, and each array file the digest of its own bytes, checked before it is
mapped. A cache that fails a check is rebuilt from the source files (whose
sha256 is checked again as they are read), and one warning line on the
``mnistlab.data`` logger says so; with no logging set up, Python prints that
line on stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import mmap
import os
import stat
from pathlib import Path

import numpy as np

# xxh3-128 for the arrays: sha256 of the 55 MB images file took ~50 ms on the
# 2-core development machine (SHA-NI), zlib.crc32 25-30 ms, xxh3-128 ~6 ms
# through a fresh mapping, which keeps a verified warm load far inside its
# 50 ms budget. A cryptographic digest would buy nothing here: whoever can
# rewrite the arrays can rewrite the manifest beside them, so the digest guards
# against damage (a flipped byte, a truncated or swapped file), not forgery.
import xxhash

from mnistlab._atomic import atomic_write_bytes, atomic_writer
from mnistlab.data.home import setting_folder
from mnistlab.data.idx import read_idx_header, read_idx_sha256
from mnistlab.data.registry import ROLES, TRANSPOSED_PREFIX
from mnistlab.errors import ChecksumError, DatasetError, IDXFormatError

__all__ = ["cache_root", "load_arrays", "fresh_manifest", "array_cache_dir", "FORMAT"]

_MAX_MANIFEST = 2**20  # bytes; a manifest is about 1.5 KB
FORMAT = 2  # the manifest layout; another value is an older mnistlab's cache, rebuilt without a word
log = logging.getLogger("mnistlab.data")


class _Damaged(Exception):
    """The cache failed a check; the message says which, for the one line the user sees."""


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/mnistlab``, else ``~/.cache/mnistlab``."""
    return setting_folder("XDG_CACHE_HOME", "~/.cache", DatasetError) / "mnistlab"


def _stamp(files: dict[str, Path]) -> dict[str, list]:
    """What tells a source file changed: size and mtime, and inode and ctime, which copying
    a file of the same size over it with its mtime kept (``cp -p``, ``rsync -a``) still changes."""
    out = {}
    for role, p in files.items():
        st = p.stat()
        out[role] = [str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    return out


def array_cache_dir(name: str, files: dict[str, Path]) -> Path:
    """The folder holding the cached arrays of the dataset in ``files``' folder."""
    # The folder the files were found in (its links resolved), not the one a linked file lives in. The key tells
    # folders apart; the name is for people, and a folder's own name may take all 255 bytes a file name may: its
    # first 64 bytes are enough to tell which it is.
    # os.fsencode: the path's own bytes, which may not be UTF-8 (a folder named b"caf\xe9", any name under LC_ALL=C).
    key = hashlib.sha256(os.fsencode(files["train_images"].parent.resolve())).hexdigest()[:16]
    shown = os.fsencode(name)[:64].decode(errors="ignore").encode()  # whole UTF-8 characters only
    return cache_root() / "arrays" / f"{os.fsdecode(shown)}-{key}"


def _manifest_sha256(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_manifest(cdir: Path, files: dict[str, Path]) -> dict | None:
    """The manifest if intact and built from ``files`` as they are now; None if absent or stale.

    Raises ``_Damaged`` when it is there but fails its own checksum.
    """
    try:
        with _open_regular(cdir / "manifest.json") as f:
            text = f.read(_MAX_MANIFEST + 1)
    except (FileNotFoundError, NotADirectoryError):  # no cache yet, or no folder for one (a file in its way)
        return None
    except OSError as exc:
        if not os.path.isdir(cdir):  # no folder to hold a cache (a name too long, a loop of links): none yet
            return None
        raise _Damaged(f"manifest.json cannot be read: {exc.strerror}") from None
    if len(text) > _MAX_MANIFEST:  # a damaged file is refused from its first MiB, whatever its size
        raise _Damaged(f"manifest.json holds more than {_MAX_MANIFEST:,} bytes, far more than a manifest")
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested past Python's stack
        raise _Damaged("manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise _Damaged("manifest.json is not a JSON object")
    if "manifest_sha256" not in manifest and manifest.get("format") != FORMAT:
        return None  # an older mnistlab's cache, which had no checksums
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    if manifest.get("manifest_sha256") != _manifest_sha256(body):
        raise _Damaged("manifest.json does not match its own checksum")
    if manifest.get("format") != FORMAT or manifest.get("stamp") != _stamp(files):
        return None  # the source files changed since: a plain rebuild
    return manifest


def fresh_manifest(name: str, files: dict[str, Path]) -> dict | None:
    """The cache manifest if it is intact and was built from exactly these files, unchanged since."""
    try:
        return _read_manifest(array_cache_dir(name, files), files)
    except _Damaged:
        return None  # load_arrays finds it again, rebuilds and says so


def _open_regular(path: Path):
    """``path`` opened to read; ``_Damaged`` for a named pipe, a device or a folder in its place: a pipe blocked
    the load for ever (the open waits for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe would block a plain open
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder too
        os.close(fd)
        raise _Damaged(f"{path.name} is not a regular file")
    return os.fdopen(fd, "rb")


def _digest(f) -> str:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        return xxhash.xxh3_128_hexdigest(b"")
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return xxhash.xxh3_128_hexdigest(mm)


def _open_verified(path: Path, entry: dict) -> np.ndarray:
    """``path`` memory-mapped (copy-on-write), once its size, digest and header match ``entry``; else ``_Damaged``.

    The bytes are hashed through the same open file that is then mapped, so a
    file swapped in between is never the one returned.
    """
    try:
        with _open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size != entry["bytes"]:
                raise _Damaged(f"{path.name} holds {size:,} bytes, not the {entry['bytes']:,} the manifest records")
            if _digest(f) != entry["xxh3_128"]:
                raise _Damaged(f"{path.name} does not match its digest in the manifest")
            if np.lib.format.read_magic(f) != (1, 0):
                raise _Damaged(f"{path.name} is not a version 1.0 .npy file")
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            if fortran or dtype.str != entry["dtype"] or list(shape) != entry["shape"]:
                raise _Damaged(f"{path.name} has a header that does not match the manifest")
            # Copy-on-write: as writable as a first load's arrays (read-only, code that changed them in place ran
            # once, then failed on every later load), and a change stays in the process, never reaches the cache.
            # A plain array on the mapping, not an np.memmap: joblib sends an np.memmap to its workers by its file
            # name, which one mapped through a descriptor has not (cross_val_score(n_jobs=2) on a warm load's
            # arrays died in BrokenProcessPool); a plain one it sends as any other array.
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            return np.ndarray(shape, dtype, buffer=mapping, offset=f.tell())
    except FileNotFoundError:
        raise _Damaged(f"{path.name} is missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise _Damaged(f"{path.name} cannot be read: {exc}") from None


def is_mapped(array) -> bool:
    """Whether ``array`` (or the array it is a view of) lies on a mapping of the cache: a warm load's."""
    while array is not None:
        if isinstance(array, mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def _open_arrays(cdir: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    try:
        entries = manifest["arrays"]
        images = _open_verified(cdir / "images.npy", entries["images"])
        labels = _open_verified(cdir / "labels.npy", entries["labels"])
        n = manifest["n_train"] + manifest["n_test"]
    except (KeyError, TypeError):
        raise _Damaged("manifest.json lacks the fields this version of mnistlab writes") from None
    if images.ndim != 3 or labels.ndim != 1 or not len(images) == len(labels) == n:
        raise _Damaged("the arrays do not match the manifest's split sizes")
    return images, labels


def load_arrays(
    name: str, files: dict[str, Path], checksums: dict[str, str], *, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N, H, W) and labels (N,) for train then test, memory-mapped from a verified cache.

    ``checksums`` are the sources' sha256 the caller verified (see ``locate``);
    they are stored in the manifest so the next load hashes only the cache.
    Labels must lie in ``0 .. n_classes - 1``.
    """
    cdir = array_cache_dir(name, files)
    problem = None
    try:
        manifest = _read_manifest(cdir, files)
        if manifest is not None and manifest["checksums"] == checksums:
            images, labels = _open_arrays(cdir, manifest)
            return images, labels, manifest
    except _Damaged as exc:
        problem = str(exc)

    images, labels, manifest = _build(name, files, checksums, n_classes)
    unsaved = _save(cdir, images, labels, manifest)
    if problem is not None:
        done = (
            "rebuilt them from the verified source files"
            if unsaved is None
            else f"loaded the verified source files instead (the cache could not be rewritten: {unsaved})"
        )
        log.warning("mnistlab: the cached arrays in %s failed their check (%s); %s.", cdir, problem, done)
    elif unsaved is not None:  # every load reads the source files again, seconds each time: say so, and why
        log.warning(
            "mnistlab: cannot cache the arrays in %s (%s), so each load reads the source files again; set "
            "XDG_CACHE_HOME to a folder you can write to.",
            cdir,
            unsaved,
        )
    return images, labels, manifest


def _build(name: str, files: dict[str, Path], checksums: dict[str, str], n_classes: int):
    """Read the four source files, checking each one's sha256 as it is read.

    The four headers are checked against each other first, so files that do not
    belong together are refused before any payload is read.
    """
    # Before the files are read: one replaced while it is read then no longer matches the stamp, and is read again
    # next time. Taken after, it vouched for the new file and the old arrays were served for ever.
    stamp = _stamp(files)
    _check_consistent({role: read_idx_header(files[role]) for role in ROLES}, files)
    arrays = {}
    for role in ROLES:
        arrays[role], sha256 = read_idx_sha256(files[role])
        if sha256 != checksums[role]:
            raise ChecksumError(
                f"{files[role]} no longer matches the sha256 it was verified with ({checksums[role][:12]}...); "
                f"replace it with a good copy or delete it."
            )
    _check_labels(arrays, files, n_classes)
    for role in ("train_images", "test_images"):
        if files[role].name.startswith(TRANSPOSED_PREFIX):
            arrays[role] = arrays[role].transpose(0, 2, 1)  # upright, as MNIST's; the copy is concatenate's
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    manifest = {
        "format": FORMAT,
        "name": name,
        "stamp": stamp,
        "checksums": dict(checksums),
        "n_train": len(arrays["train_labels"]),
        "n_test": len(arrays["test_labels"]),
    }
    return images, labels, manifest


def _save(cdir: Path, images: np.ndarray, labels: np.ndarray, manifest: dict) -> str | None:
    """Write the arrays, then the manifest that vouches for them; the reason if the folder refused."""
    try:
        # Arrays first, manifest last: a crash in between leaves digests that fail, never a wrong cache.
        entries = {
            key: _atomic_save_npy(cdir / f"{key}.npy", arr) for key, arr in (("images", images), ("labels", labels))
        }
        body = {**manifest, "arrays": entries}
        data = json.dumps({**body, "manifest_sha256": _manifest_sha256(body)}, indent=1).encode()
        atomic_write_bytes(cdir / "manifest.json", data)
    except OSError as exc:
        # Nothing vouches for what this save wrote (its manifest comes last), nor for the cache it was to replace:
        # removed, not left on a full disk for ever (MNIST's images: 55 MB). A read-only cache only costs speed.
        for name in ("manifest.json", "images.npy", "labels.npy"):
            with contextlib.suppress(OSError):
                (cdir / name).unlink(missing_ok=True)
        return exc.strerror or str(exc)
    return None


def _atomic_save_npy(path: Path, arr: np.ndarray) -> dict:
    """Write ``arr`` as a version 1.0 ``.npy`` file; return its manifest entry, digest of the bytes written."""
    arr = np.ascontiguousarray(arr)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    digest = xxhash.xxh3_128()
    with atomic_writer(path) as f:
        for part in (header.getbuffer(), arr.data.cast("B")):
            f.write(part)
            digest.update(part)
    return {
        "dtype": arr.dtype.str,
        "shape": list(arr.shape),
        "bytes": header.tell() + arr.nbytes,
        "xxh3_128": digest.hexdigest(),
    }


def _check_consistent(headers: dict[str, tuple[np.dtype, tuple[int, ...]]], files: dict[str, Path]) -> None:
    """Dtypes and shapes of the four files, from their headers: images uint8 (N, H, W), N integer labels."""
    for split in ("train", "test"):
        (img_dtype, img_shape), (lab_dtype, lab_shape) = headers[f"{split}_images"], headers[f"{split}_labels"]
        images, labels = files[f"{split}_images"], files[f"{split}_labels"]
        if len(img_shape) != 3 or img_dtype != np.uint8:
            raise IDXFormatError(
                f"{images}: expected uint8 images of rank 3, got {img_dtype} of shape {img_shape}; give images as "
                "uint8 pixels (0-255) of shape (count, height, width), as MNIST's files hold them."
            )
        if len(lab_shape) != 1:
            raise IDXFormatError(
                f"{labels}: expected one label per image, of shape ({img_shape[0]},), got shape {lab_shape}; "
                "write the labels as a flat list, e.g. write_idx(path, labels.ravel())."
            )
        if lab_shape[0] != img_shape[0]:
            raise IDXFormatError(
                f"{labels} holds {lab_shape[0]:,} labels but {images} holds {img_shape[0]:,} images; the two files "
                "do not belong together, so give the labels of these images."
            )
        if lab_dtype.kind not in "iu":
            raise IDXFormatError(f"{labels}: labels must be integers, got {lab_dtype}; write them as class numbers.")
        if 0 in img_shape:  # nothing to split, train on or test: refused here, not deep in numpy
            what = "no images" if img_shape[0] == 0 else f"images of {img_shape[1]}x{img_shape[2]} pixels"
            raise IDXFormatError(
                f"{images} holds {what}; give train and test files that hold at least one image each, of at least "
                "one pixel."
            )
    size, test_size = headers["train_images"][1][1:], headers["test_images"][1][1:]
    if size != test_size:
        raise IDXFormatError(
            f"The training images are {size[0]}x{size[1]} ({files['train_images']}) but the test images are "
            f"{test_size[0]}x{test_size[1]} ({files['test_images']}); the four files do not belong together, so "
            "give the train and test files of one data set."
        )


def _check_labels(arrays: dict[str, np.ndarray], files: dict[str, Path], n_classes: int) -> None:
    for role in ("train_labels", "test_labels"):
        lab = arrays[role]
        bad = np.flatnonzero((lab < 0) | (lab >= n_classes))
        if bad.size:
            raise IDXFormatError(
                f"{files[role]}: label {lab[bad[0]]} (at index {bad[0]}) is outside the {n_classes} classes "
                f"0-{n_classes - 1}, the only classes mnistlab reads; correct the label if it is a mistake, or give a "
                f"set of digits labelled 0-{n_classes - 1} (sets of other or more classes, such as EMNIST's letters, "
                "are not supported)."
            )
