"""Where a comparison writes: its report folder, each fit's model folder, a reused model installed by request.

Models are saved under ``OUT/models/DATASET/MODEL/seed-S``; with
``update_models`` mnistlab's recipes on MNIST with the first seed go to their
default model folders. The folders are checked writable before any data is
read, and made once the settings are known to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from mnistlab._atomic import locked_folder
from mnistlab.errors import ParameterError
from mnistlab.lab.options import check_model_dir, check_writable_dir
from mnistlab.lab.specs import Contender
from mnistlab.models.files import default_model_dir
from mnistlab.models.folder import install_files, read_regular
from mnistlab.models.recipes import RECIPES

__all__ = ["check_outputs", "folder_made", "install_model", "model_dir_for"]


def check_outputs(given, contenders: list[Contender], update_models: bool) -> Path:
    """Refuse now, not after the fits, an ``out_dir`` (or with ``update_models`` a recipe's default model
    folder) that cannot be written; probed, nothing is created. Returns the report's folder as a Path."""
    out_dir = check_writable_dir(given, "out_dir")
    page, models = out_dir / "index.html", out_dir / "models"
    if page.is_dir():
        _in_the_way(out_dir, "a folder", page.name, "the report's page goes")
    if os.path.lexists(page) and not _is_report_page(page):  # a site's own page: never written over
        raise ParameterError(
            "out_dir",
            f"{{param}} {out_dir} holds an index.html that is no mnistlab report, which the report's page would "
            "replace; move it away or choose another folder.",
        )
    if models.exists() and not models.is_dir():
        _in_the_way(out_dir, "a file", models.name, "the models go")
    if update_models:
        for contender in contenders:
            if _is_recipe(contender):
                check_model_dir(default_model_dir(contender.name), "update_models")  # another tool's files too
    return out_dir


def _is_report_page(page: Path) -> bool:
    """Whether ``page`` is the page of a report ``compare`` wrote (its title, near the top), which a report replaces."""
    try:
        head = read_regular(page, 4096)
    except OSError:  # unreadable: the write says what is wrong
        return True
    return head is not None and b"<title>mnistlab: classifier comparison</title>" in head


def _in_the_way(out_dir: Path, kind: str, name: str, what: str) -> NoReturn:
    raise ParameterError(
        "out_dir", f"{{param}} {out_dir} holds {kind} named {name}, where {what}; remove it or choose another folder."
    )


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # probed writable before the data was read: something changed it since
        raise ParameterError(
            "out_dir", f"Cannot write {{param}} {folder} ({exc.strerror}); choose a place you can write to."
        ) from None


@contextlib.contextmanager
def folder_made(folder: Path) -> Iterator[None]:
    """``folder`` made for a run (``_make_folder``), and removed again if the run fails and leaves it empty where
    there was none: a classifier failing on its first fit, or a tracking store that cannot be opened, left an
    empty report folder behind."""
    existed = folder.exists()
    _make_folder(folder)
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):  # not empty (a model saved before the failure): kept
                folder.rmdir()
        raise


def install_model(source: Path, target: Path) -> None:
    """Copy a verified model directory's files into ``target`` (weights first, the card last, as ``save_model``)."""
    if target.resolve() == source.resolve():
        return
    card = source / "model.json"
    with locked_folder(source, shared=True):  # a save meanwhile: its card beside weights it did not write
        paths = [*(p for p in sorted(source.iterdir()) if p.is_file() and p != card), card]
        files = {p.name: p.read_bytes() for p in paths if not p.name.startswith(".")}
    install_files(target, files)


def _is_recipe(contender: Contender) -> bool:
    return contender.spec in RECIPES and contender.code_sha256 is None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"


def model_dir_for(
    out: Path, contender: Contender, dataset: str, seed: int, first_seed: int, update: bool, *, published: bool
) -> Path:
    """Where a fit is saved: under the report folder, or (``update``) a recipe's default model directory, which
    ``predict`` and ``serve`` take for an MNIST model: only for MNIST's own files (``published``: verified against
    its checksums), not for a folder of other IDX files that is named mnist."""
    if update and _is_recipe(contender) and dataset == "mnist" and published and seed == first_seed:
        return default_model_dir(contender.name)
    return out / "models" / _folder_name(dataset) / _folder_name(contender.name) / f"seed-{seed}"


def _folder_name(name: str) -> str:
    """A dataset's or a model's folder under models/: its name where that is a plain folder name, else the name
    made one plus a digest of it, so that two names ("my data" and "my-data", "mine:make" and a spec file's
    "mine-make") never share one."""
    slug = _slug(name)
    return slug if slug == name else f"{slug}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
