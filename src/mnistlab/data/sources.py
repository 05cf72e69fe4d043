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
import os
import zlib
from pathlib import Path

from mnistlab.data.cache import cache_root, fresh_manifest
from mnistlab.data.registry import DATASETS, FILE_PATTERNS, ROLES
from mnistlab.errors import ChecksumError, DatasetError, IDXFormatError

__all__ = ["find_idx_files", "locate", "checksums_of", "Checksums", "sha256_decompressed", "decompressed_bytes"]


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (``.gz`` or raw), or None if any is missing."""
    found = {}
    for role, stems in FILE_PATTERNS.items():
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
    manifest = fresh_manifest(name, files)
    if manifest is not None:
        return Checksums(manifest["checksums"])
    payloads = {role: decompressed_bytes(files[role]) for role in ROLES}
    result = Checksums({role: hashlib.sha256(payloads[role]).hexdigest() for role in ROLES})
    result.payloads = payloads
    return result


class Checksums(dict):
    """role -> sha256; may carry the decompressed ``payloads`` it was computed from."""

    payloads: dict[str, bytes] | None = None
