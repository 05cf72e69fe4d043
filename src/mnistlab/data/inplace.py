"""What a download does with a file already where it is to write one: keep it, replace it, or leave it be."""

from __future__ import annotations

import logging
from pathlib import Path

from mnistlab.data.registry import DATASETS, DatasetSpec
from mnistlab.data.sources import sha256_decompressed
from mnistlab.errors import DatasetError, IDXFormatError

__all__ = ["keep_in_place"]
log = logging.getLogger("mnistlab.data")


def keep_in_place(final: Path, spec: DatasetSpec, role: str, in_cache: bool) -> bool:
    """Whether ``final`` is already a good copy of ``spec``'s ``role`` file (False: download it).

    A damaged file (cut short, not IDX; in mnistlab's own cache, any other)
    is downloaded again, one line says so. A whole IDX file of other data in a
    folder the caller gave (another data set's of the same name, the user's
    own digits) is refused with a ``DatasetError``, never written over.
    """
    if not final.is_file():
        return False
    try:
        got = sha256_decompressed(final)
    except IDXFormatError:
        got = None
    if got == spec.sha256[role]:
        return True
    if got is not None and not in_cache:
        other = next((s.name for s in DATASETS.values() if got in s.sha256.values()), None)
        known = f" ({other}'s, by its sha256)" if other else ""
        raise DatasetError(
            f"{final} holds other data than {spec.name}'s {role.replace('_', ' ')}{known}; mnistlab does not write "
            f"over it: download {spec.name} into another folder, or move the file away."
        )
    log.warning("mnistlab: %s is damaged; downloading it again.", final)
    return False
