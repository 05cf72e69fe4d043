"""The files of a model directory: which names belong to its model, and what stands in a save's way.

A folder holds one model. Besides its card and weights, what was made from the
model is kept beside them (``evaluate``'s figures, a torch module's ONNX); a
save removes those a previous model left, so that the folder never shows one
model's figures beside another's weights. Files of other names, and files of
these names in a folder that held no model, are not touched.

Kept apart from ``models.files`` (numpy, safetensors) so that the CLI can check
an output folder before training without importing either.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from mnistlab._atomic import atomic_write_together, locked_folder
from mnistlab.errors import ModelFileError, ParameterError
from mnistlab.models.cards import recipe_name

__all__ = [
    "install_files",
    "followed_link",
    "CARD_FILE",
    "SKOPS_FILE",
    "SAFETENSORS_FILE",
    "ONNX_FILE",
    "CONFUSION_PNG",
    "MISTAKES_PNG",
    "MODEL_FILES",
    "folder_in_the_way",
    "foreign_file",
    "foreign_sentence",
    "check_save_target",
    "model_file_named",
    "remove_stale",
    "read_regular",
    "read_weights",
    "check_model_name",
]

CARD_FILE = "model.json"
SKOPS_FILE = "model.skops"
SAFETENSORS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"  # a user's torch module, beside its weights (lab.fitting): they need its code to load
CONFUSION_PNG, MISTAKES_PNG = "confusion.png", "mistakes.png"  # what `evaluate` draws, by default into the folder
# Every name save_model writes or removes in a model directory: a folder by one of these names blocks the save.
MODEL_FILES = (CARD_FILE, SKOPS_FILE, SAFETENSORS_FILE, ONNX_FILE, CONFUSION_PNG, MISTAKES_PNG)


def folder_in_the_way(model_dir) -> Path | None:
    """The first of ``MODEL_FILES`` in ``model_dir`` that is a folder, which no save can replace or remove; or None.

    A link is not in the way, whatever it points at: a save replaces the link itself.
    """
    for name in MODEL_FILES:
        path = Path(model_dir) / name
        if path.is_dir() and not path.is_symlink():
            return path
    return None


def foreign_file(model_dir) -> Path | None:
    """The first file of a model's names (card, weights, ONNX) in ``model_dir`` though no mnistlab model was saved
    there (its ``model.json`` is none of mnistlab's cards, or there is none); or None. Another tool's files go by
    these names (TensorFlow.js's ``model.json``, Hugging Face's ``model.safetensors``): a save would write over
    them or remove them as a previous model's."""
    model_dir = Path(model_dir)
    if _holds_card(model_dir / CARD_FILE):
        return None
    for name in (CARD_FILE, SKOPS_FILE, SAFETENSORS_FILE, ONNX_FILE):
        if os.path.lexists(model_dir / name):
            return model_dir / name
    return None


def check_save_target(model_dir: Path) -> None:
    """Refuse, before anything is written, a folder a save cannot write: one of the model's files there is a
    folder (found after the weights were written beside an old card), or another tool's (``foreign_file``)."""
    blocked = folder_in_the_way(model_dir)
    if blocked is not None:
        raise ModelFileError(
            f"Cannot save the model into {model_dir}: {blocked.name} there is a folder, where the model's file goes; "
            "remove it or choose another folder."
        )
    foreign = foreign_file(model_dir)
    if foreign is not None:
        raise ModelFileError(f"Cannot save the model into {model_dir}: {foreign_sentence(foreign)}")


def foreign_sentence(foreign: Path) -> str:
    """What ``foreign_file`` found, and what to do: the end of a sentence that names the folder."""
    return (
        f"it holds {foreign.name}, which mnistlab did not save (there is no mnistlab model card), and the save would "
        "write over it or remove it; move that file away or choose another folder."
    )


def _holds_card(card: Path) -> bool:
    """Whether ``card`` is a model card mnistlab wrote, of any format version, edited or damaged past its
    ``format_version`` (every card holds one), which a save may replace."""
    try:
        text = read_regular(card, most=16 * 2**20)  # a card is kilobytes (models.cards.MAX_CARD_BYTES)
    except OSError:
        return False
    return text is not None and b'"format_version"' in text


def model_file_named(path) -> bool:
    """Whether ``path`` names a file the model saved in its folder is loaded from: its card, its weights, or an
    ONNX graph its card records (a torch module's). Written over by another output, the model is refused."""
    path = Path(path)
    card = path.parent / CARD_FILE
    if path.name not in (CARD_FILE, SKOPS_FILE, SAFETENSORS_FILE, ONNX_FILE) or not card.is_file():
        return False
    if path.name != ONNX_FILE:
        return True
    try:
        text = read_regular(card, most=1_000_000)  # a card is a few kB; it is checked in full when loaded
    except OSError:
        return False
    return text is not None and b'"onnx_sha256"' in text


def remove_stale(model_dir, keep) -> None:
    """Remove from ``model_dir`` each of ``MODEL_FILES`` not named in ``keep``: what the model saved there left.

    Only where a model was saved (its card is there): in another folder, files
    of these names were not written by mnistlab, and are left alone.
    """
    model_dir = Path(model_dir)
    if not (model_dir / CARD_FILE).is_file():
        return
    for name in MODEL_FILES:
        if name not in keep:
            (model_dir / name).unlink(missing_ok=True)


def install_files(model_dir, files: dict[str, bytes]) -> None:
    """Put ``files`` (name -> bytes, the card last) in ``model_dir`` in place of the model there, as
    ``save_model`` does: the folder locked meanwhile (two writers would mix their files), what the old model
    left removed, then all written or, stopped, none (``atomic_write_together``); ``ModelFileError`` where the
    folder cannot be written (a full disk), the model there left whole."""
    model_dir = Path(model_dir)
    weights = (SKOPS_FILE, SAFETENSORS_FILE, ONNX_FILE)  # the old model's, kept until the new one is in place
    check_save_target(model_dir)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        with locked_folder(model_dir):
            remove_stale(model_dir, keep={*files, *weights})
            atomic_write_together(model_dir, files)
            for name in weights:  # what a model of another kind left: removed once the new one is whole
                if name not in files:
                    (model_dir / name).unlink(missing_ok=True)
    except OSError as exc:  # as save_model says it: one sentence, where a traceback was
        raise ModelFileError(
            f"Cannot write the model into {model_dir} ({exc.strerror}); choose a folder you can write to."
        ) from None


def read_regular(path: Path, most: int | None = None, *, sha256: str | None = None) -> bytes | None:
    """A regular file's bytes (``most`` at most, else its size as it was opened); None for a named pipe or a
    device, which would block the open, or be read without end. ``OSError`` as ``open`` raises it.

    With ``sha256``, ``ValueError`` unless the file has that digest: hashed as a stream before it is read (a
    file of any size is refused in bounded memory), and the bytes read hashed again (a file changed between).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe would block a plain open
    with os.fdopen(fd, "rb") as f:  # a folder: IsADirectoryError
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if sha256 is not None and hashlib.file_digest(f, "sha256").hexdigest() != sha256:
            raise ValueError(f"{path} does not have the sha256 {sha256}")
        f.seek(0)
        data = f.read(info.st_size if most is None else most)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path} changed while it was read")
    return data


def read_weights(path: Path, card: dict) -> bytes:
    """The weights file's bytes: a regular file (a link to /dev/zero or a pipe would be read without end) whose
    sha256 is the card's, hashed before it is held in memory (a 30 GB file in its place is refused, not read)."""
    retrain = f"retrain the model with `mnistlab train {recipe_name(card)}`"
    try:
        data = read_regular(path, sha256=card["weights_sha256"])
    except ValueError:
        raise ModelFileError(
            f"{path} does not match the sha256 recorded in {CARD_FILE}, so it was changed or corrupted; "
            "restore the original file or retrain the model."
        ) from None
    except OSError:
        raise ModelFileError(f"{path.parent} has no readable {path.name}; {retrain}.") from None
    if data is None:
        raise ModelFileError(f"{path} is not a regular file, so it holds no saved model; {retrain}.")
    return data


def check_model_name(recipe) -> str:
    """``recipe`` if it can name a folder in the models folder (``default_model_dir``); else a ``ParameterError``:
    a number or None was a TypeError traceback, and ``"../x"`` or ``"/abs"`` named a folder outside it."""
    if not isinstance(recipe, str):
        raise ParameterError("recipe", f"{{param}} must be a recipe's name (a str), got {recipe!r}.")
    if recipe in ("", ".", "..") or any(sep in recipe for sep in (os.sep, os.altsep) if sep):
        raise ParameterError(
            "recipe",
            f"{{param}} {recipe!r} is no recipe's name: a model's default folder is one folder in the models "
            "folder, named after its recipe; give a name such as 'knn', or pass the folder itself as out.",
        )
    return recipe


def followed_link(model_dir):
    """``model_dir`` with the links on its way followed once, where it has some and leads to a folder; else as
    given. A model put in service by a link (``ln -sfn v2 current``, swapped by another process) is then read from
    one folder: followed for each file, a swap between reading the card and the weights read one model's card
    beside the other's weights, and the model was refused as "changed or corrupted"."""
    if not isinstance(model_dir, (str, os.PathLike)):
        return model_dir  # read_card says what is wrong with it
    try:
        real = os.path.realpath(model_dir)
        return Path(real) if real != os.path.abspath(model_dir) and os.path.isdir(real) else model_dir
    except (OSError, ValueError):  # a name too long, a NUL in it: read_card says what is wrong with it
        return model_dir
