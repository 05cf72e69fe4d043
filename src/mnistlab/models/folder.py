"""The files of a model directory: which names a save writes there, and what stands in its way.

Kept apart from ``models.files`` (numpy, safetensors) so that the CLI can check
an output folder before training without importing either.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CARD_FILE", "SKOPS_FILE", "SAFETENSORS_FILE", "MODEL_FILES", "folder_in_the_way"]

CARD_FILE = "model.json"
SKOPS_FILE = "model.skops"
SAFETENSORS_FILE = "model.safetensors"
# Every name save_model writes or removes in a model directory: a folder by one of these names blocks the save.
MODEL_FILES = (CARD_FILE, SKOPS_FILE, SAFETENSORS_FILE)


def folder_in_the_way(model_dir) -> Path | None:
    """The first of ``MODEL_FILES`` in ``model_dir`` that is a folder, which no save can replace or remove; or None.

    A link is not in the way, whatever it points at: a save replaces the link itself.
    """
    for name in MODEL_FILES:
        path = Path(model_dir) / name
        if path.is_dir() and not path.is_symlink():
            return path
    return None
