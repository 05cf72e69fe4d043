"""Find, verify, download and cache MNIST-format datasets.

Lookup order for a registered dataset: an explicit ``data_dir``; ``$MNISTLAB_DATA``
(a folder of IDX files, or of ``<name>/`` subfolders); the user cache
(``$XDG_CACHE_HOME/mnistlab``, else ``~/.cache/mnistlab``); Debian's
``/usr/share/datasets/<name>/``; then the public mirrors. Files are verified by
the sha256 of their *decompressed* bytes, which holds whichever mirror
compressed them, hashed as a stream with the IDX header checked first. After
the first verified load the arrays are kept in a cache that proves itself (see
``cache``); it is rebuilt when the source files change (size, mtime, inode or ctime) or
when it fails a check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mnistlab.data.cache import cache_root, fresh_manifest
from mnistlab.data.home import expand_home
from mnistlab.data.idx import idx_sha256
from mnistlab.data.registry import DATASETS, FILE_PATTERNS, ROLES
from mnistlab.errors import ChecksumError, DatasetError, IDXFormatError

__all__ = ["find_idx_files", "not_four_files", "locate", "checksums_of", "published_name", "sha256_decompressed"]


_SHORT = dict(zip(ROLES, ("train-images", "train-labels", "t10k-images", "t10k-labels")))  # as sentences name them
_FOUR = f"the four IDX files ({', '.join(_SHORT.values())})"
# A file of one of EMNIST's sets as NIST publishes them; the name of the set is the group.
_EMNIST_FILE = re.compile(r"emnist-([a-z]+)-(?:train|test)-(?:images-idx3|labels-idx1)-ubyte(?:\.gz)?")


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (``.gz`` or raw), or None if any is missing or there is no such folder."""
    found = _present(folder)
    return found if len(found) == len(ROLES) else None


def _present(folder: Path) -> dict[str, Path]:
    """role -> file, for those of the four IDX files ``folder`` holds; a ``DatasetError`` if it cannot be read."""
    found = {}
    try:
        if not folder.is_dir():
            return {}
        for role, stems in FILE_PATTERNS.items():
            hits = (folder / (stem + ext) for stem in stems for ext in (".gz", ""))
            hit = next((p for p in hits if p.is_file()), None)
            if hit:
                found[role] = hit
    except OSError as exc:  # not a missing folder, which is_dir answers: permission denied, a name too long
        raise DatasetError(
            f"{folder} cannot be read ({exc.strerror or exc}); give a folder mnistlab can read."
        ) from None
    return found


def not_four_files(folder: Path) -> str:
    """The sentence for a folder given to load that does not hold the four IDX files: why, and what to do."""
    found = _present(folder)
    if not found and not folder.exists():
        return f"{folder} does not exist; give the folder that holds {_FOUR}."
    if not found and not folder.is_dir():
        return f"{folder} is a file, not a folder; give the folder that holds {_FOUR}."
    if not found:
        other = _emnist_file(folder)
        if other is not None:  # letters, or digits and letters: not that a file is missing
            return (
                f"{folder} holds {other[0]}, of EMNIST's {other[1]} set, whose classes are "
                "not the ten digits, and mnistlab reads sets of the ten digits only; give a folder of EMNIST's digits "
                "(its emnist-digits or emnist-mnist files) or of other digits labelled 0-9."
            )
        return f"{folder} does not hold {_FOUR}; give the folder that holds them."
    missing = [_SHORT[role] for role in ROLES if role not in found]
    held = " and ".join(found[role].name for role in ROLES if role in found)
    return (
        f"{folder} holds {held} but no {' or '.join(missing)} file; add {'it' if len(missing) == 1 else 'them'}, "
        "or give the folder that holds all four."
    )


def _emnist_file(folder: Path) -> tuple[str, str] | None:
    """The name of a file of one of EMNIST's sets in ``folder`` (the first by name) and the set's; None if none."""
    try:
        name = min((p.name for p in folder.iterdir() if _EMNIST_FILE.fullmatch(p.name)), default=None)
    except OSError:  # a folder that can be looked into but not listed
        return None
    found = _EMNIST_FILE.fullmatch(name) if name is not None else None
    return (found.string, found.group(1)) if found is not None else None


def sha256_decompressed(path: Path) -> str:
    """sha256 of the file's content after gunzip (or of the raw file), streamed; the IDX header is checked first."""
    return idx_sha256(path)


def _candidates(name: str, data_dir: Path | None) -> list[tuple[str, Path]]:
    """(kind, folder) pairs in lookup order; kind tells how strict a mismatch is."""
    if data_dir is not None:
        return [("explicit", Path(data_dir))]
    out = []
    env = os.environ.get("MNISTLAB_DATA")
    if env:
        # A .env file or a quoted value leaves the ~ to mnistlab.
        folder = expand_home(
            env, lambda why: DatasetError(f"MNISTLAB_DATA={env} {why}; set it to a folder's full path, or unset it.")
        )
        out += [("env", folder / name), ("env-flat", folder)]
    out.append(("cache", cache_root() / name))
    out.append(("system", Path("/usr/share/datasets") / name))
    return out


def locate(name: str, data_dir: Path | None = None) -> tuple[dict[str, Path], dict[str, str], list[str]]:
    """Find the four verified files of ``name``: (files, checksums, places searched).

    Checksums come from a fresh array-cache manifest when there is one (so a warm
    load hashes nothing), else from hashing the decompressed bytes. A flat
    ``$MNISTLAB_DATA`` folder may hold another dataset with the same file names
    (Fashion-MNIST uses MNIST's names), so there a folder whose files *all*
    disagree with the checksums is skipped, while a partial match means a
    corrupt copy and is an error. A ``data_dir`` whose files all disagree holds
    another data set: that is said (naming it if its checksums tell), with no
    advice to delete anything.
    """
    spec = DATASETS[name]
    searched = []
    for kind, folder in _candidates(name, data_dir):
        searched.append(str(folder))
        files = find_idx_files(folder)
        if files is None:
            if kind == "explicit":
                raise DatasetError(not_four_files(folder))
            continue
        try:
            checksums = checksums_of(name, files)
        except IDXFormatError:
            if kind != "cache":
                raise
            checksums = {role: _sha256_if_idx(files[role]) for role in ROLES}  # which one is it?
        bad = [role for role in ROLES if checksums[role] != spec.sha256[role]]
        if not bad:
            return files, checksums, searched
        if kind == "cache":  # mnistlab's own download, damaged since it was verified: download_dataset replaces it
            searched[-1] = f"{folder} [{', '.join(files[role].name for role in bad)} damaged]"
            continue
        if kind == "env-flat" and len(bad) == len(ROLES):
            searched[-1] = f"{folder} [four IDX files, not {name}'s]"  # another dataset's: keep looking
            continue
        if kind == "explicit" and len(bad) == len(ROLES):
            raise ChecksumError(_another_dataset(name, folder, checksums))  # not damage: nothing to delete
        raise ChecksumError(
            f"{files[bad[0]]} does not match the published sha256 of {name}'s {bad[0].replace('_', ' ')}; delete or replace the file (mnistlab then finds or downloads a good copy)."
        )
    return {}, {}, searched


def _sha256_if_idx(path: Path) -> str:
    """The sha256 of the file's decompressed bytes; "" for one that cannot be read as IDX (cut short, not IDX)."""
    try:
        return idx_sha256(path)
    except IDXFormatError:
        return ""


def _another_dataset(name: str, folder: Path, checksums: dict[str, str]) -> str:
    """The sentence for a folder whose four files all differ from ``name``'s: another data set, named if known."""
    other = next((s.name for s in DATASETS.values() if all(checksums[r] == s.sha256[r] for r in ROLES)), None)
    if other is not None:
        return (
            f"{folder} holds {other}'s files, not {name}'s; load it as {other}, or give the folder that holds {name}."
        )
    return (
        f"None of the four IDX files in {folder} matches the published sha256 of {name}'s, so it holds another data "
        f"set; leave out the name {name} to load the folder as it is, or give the folder that holds {name}."
    )


def checksums_of(name: str, files: dict[str, Path]) -> dict[str, str]:
    """role -> sha256 of decompressed bytes, from an intact, fresh cache manifest if present.

    Otherwise each file is hashed as a stream (header first, one chunk of memory),
    so a file that is not what it claims costs little before it is refused.
    """
    manifest = fresh_manifest(name, files)
    if manifest is not None:
        return dict(manifest["checksums"])
    return {role: idx_sha256(files[role]) for role in ROLES}


def published_name(folder: Path) -> str | None:
    """The registered dataset whose published files ``folder`` holds (each file's sha256), or None: a fit of them
    records that dataset's name, not the folder (``lab.fitting.split_for``)."""
    try:
        files = find_idx_files(folder)
        if files is None:
            return None
        known = (fresh_manifest(spec.name, files) for spec in DATASETS.values())  # a folder loaded before: no hashing
        checksums = next((m["checksums"] for m in known if m is not None), None) or checksums_of(folder.name, files)
    except (DatasetError, IDXFormatError, OSError):  # unreadable, or no IDX files: no dataset's
        return None
    return next((s.name for s in DATASETS.values() if all(checksums[r] == s.sha256[r] for r in ROLES)), None)
