"""Where the package's own files are: the reader shipped in ``pretrained/``, and the folder around it.

pathlib only, so that the CLI's checks of an output path (``lab.options``) can
ask whether a path is inside the package without loading the reader.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_DIR", "PRETRAINED_DIR", "inside_package"]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PRETRAINED_DIR = PACKAGE_DIR / "pretrained"


def inside_package(path, *, folder: bool = False) -> bool:
    """Whether writing ``path`` (a file; ``folder``: a folder to write into) writes into the package's own folder.

    Links are followed as a write follows them: a file's folder, and a folder itself, are resolved; a file's own
    name is not (an atomic write replaces a link, it does not write where the link points).
    """
    path = Path(path)
    where = Path(os.path.realpath(path if folder else path.parent))
    return where == PACKAGE_DIR or PACKAGE_DIR in where.parents
