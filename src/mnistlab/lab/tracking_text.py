"""What passes between mnistlab and MLflow as text: keys MLflow takes, values within its limits, its errors in a sentence.

MLflow refuses some characters in a parameter's or a metric's name, names
that read as paths ("..") and names over 250 characters; ``mlflow_key`` gives
every name a key of its own that MLflow takes, and ``Tracker`` records the
name of each renamed key in a tag. ``open_error`` and ``reason`` say why a
store failed in the words of what failed (the database, the network), which
MLflow's own message can hide.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mnistlab._text import path_text
from mnistlab.data.home import expand_home
from mnistlab.data.mirrors import masked_credentials
from mnistlab.data.sources import published_name
from mnistlab.errors import ParameterError, TrackingError

__all__ = [
    "store_path",
    "RENAMED",
    "mlflow_key",
    "param_text",
    "open_error",
    "reason",
    "sqlite_uri",
    "shown_uri",
    "store_failed",
    "quiet_mlflow",
    "no_misread_folders",
    "dataset_folder",
]

_PARAM_CHARS = 6000  # MLflow's longest parameter value: a longer one (a module's repr) is cut, marked with "…"
RENAMED = "mnistlab_key/"  # a tag per key mlflow_key renamed, holding the name it stands for
_KEY_CHARS = 250 - len(RENAMED)  # MLflow's longest key, less the prefix of the tag that names a renamed one
_PART_CHARS = 100  # a part of a key of several ("test_accuracy/MODEL/DATASET")
# What MLflow refuses in a key's part: all but letters and digits of any script, "_", "-", ".", " " and, except on
# Windows, ":".
_REFUSED = re.compile(r"[^\w\-. ]" if os.name == "nt" else r"[^\w\-. :]")


def sqlite_uri(path: Path) -> str:
    """The ``sqlite:///`` URI of the database file ``path``. SQLAlchemy reads the URI as a URL: a ``?`` in a folder's
    name began its query (the store went to a file named by the path cut there) and ``%20`` was a space, so ``%``,
    ``?`` and ``#`` are percent-encoded, as its parser decodes them. A path whose name is no text to this Python
    (b"caf\\xe9"; "café" under ``LC_ALL=C PYTHONUTF8=0``) is refused: MLflow opens a store by text alone, and said
    so in a ``UnicodeEncodeError`` that asked to check the URI."""
    if any("\udc80" <= char <= "\udcff" for char in str(path)):  # surrogateescape's bytes
        raise TrackingError(
            f"The tracking store {path_text(str(path))} is named by bytes that are not {sys.getfilesystemencoding()} "
            "text, and MLflow opens a store by text alone; give one elsewhere with --tracking-uri or "
            "MLFLOW_TRACKING_URI (a path ending in .db), or rename the folder."
        )
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def store_path(database: Path, named: str) -> Path:
    """``database``, a SQLite store's path as given (``named``: ``{param} PATH``), unless a file stands where one of
    its folders goes: MLflow failed making it, once the data had loaded, in "File exists", of a file that does."""
    above = database.parent
    while not os.path.lexists(above) and above != above.parent:
        above = above.parent
    if os.path.exists(above) and not os.path.isdir(above):
        raise ParameterError(
            "tracking_uri",
            f"{named}: {path_text(str(above))} is a file, not a folder, so the store cannot be made there; give a "
            "path in a folder, or move that file.",
        )
    return database


@contextlib.contextmanager
def no_misread_folders(uri: str, database: Path | None) -> Iterator[None]:
    """For the block, in which MLflow opens the store ``uri``: the folders MLflow makes for it from the URI's text
    undecoded (``exp%3F`` beside ``exp?``, which holds the ``database``) are removed after it, where still empty."""
    misread = Path(uri.removeprefix("sqlite:///")).parent
    made = [] if database is None or misread == database.parent else [misread, *misread.parents]
    made = [folder for folder in made if not os.path.lexists(folder)]  # deepest first
    try:
        yield
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not made after all, or not empty
                break


def mlflow_key(name: str | tuple[str, ...]) -> str:
    """The key MLflow records ``name`` under; a tuple's parts joined by "/" (``("test_accuracy", model,
    dataset)``). A part MLflow takes is kept as it is. Any other (a character MLflow refuses, such as "#" in a
    step's name; a path's "." or ".."; too long for MLflow's 250) keeps the characters it may, "_" for the rest,
    cut, then "-" and 8 hex digits of its sha256: two names never share a key (which would keep one value and
    lose the other), and the run's tag ``mnistlab_key/KEY`` gives the name back."""
    parts = (name,) if isinstance(name, str) else name
    room = _KEY_CHARS if len(parts) == 1 else _PART_CHARS
    return "/".join(_key_part(part, room) for part in parts)


def _key_part(part: str, room: int) -> str:
    if not _REFUSED.search(part) and part not in ("", ".") and not part.startswith("..") and len(part) <= room:
        return part
    taken = re.sub(r"^\.", "_", _REFUSED.sub("_", part))  # ".." and a name from it: a path's, refused
    return f"{taken[: room - 9]}-{hashlib.sha256(part.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def param_text(value) -> str:
    """A parameter's value as MLflow keeps it: text as it is (a folder's name not in UTF-8 as ``path_text`` says it),
    anything else as JSON; cut to MLflow's limit."""
    text = path_text(value) if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 1] + "…"


def reason(exc: BaseException) -> str:
    """``Type: first line`` of the error at the root of ``exc``: the database's or the network's own words
    ("attempt to write a readonly database", "Connection refused"), which MLflow's wrapping of them can hide."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None or id(inner) in seen:
            return f"{type(exc).__name__}: {_first_line(exc)}"
        exc = inner
        seen.add(id(exc))


def shown_uri(uri: str, text: str | None = None) -> str:
    """``text`` (by default ``uri`` itself) with the password of the store ``uri`` as ``***`` (``http://USER:
    PASSWORD@host``, ``postgresql://USER:PASSWORD@host/db``; a token alone too): a URI is said in messages and
    recorded in ``--json``, which are kept in logs and shared, so a password in it never is."""
    text = uri if text is None else text
    found = masked_credentials(uri)
    return text if found is None else text.replace(*found)


def quiet_mlflow() -> None:
    """MLflow's settings for mnistlab's stores, where not set already: a tracking server that does not answer fails
    in seconds, not after minutes of retries, and MLflow prints no "View run ... at: URL" line as a run ends (the
    URL held the store's password; mnistlab says where the runs went itself)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def store_failed(uri: str, exc: Exception) -> TrackingError:
    """The store ``uri``, opened, failed with ``exc``: why, in one sentence, a password in it said as ``***``."""
    said = f"The tracking store {uri} failed ({reason(exc)}); check that it is reachable and writable."
    return TrackingError(shown_uri(uri, said))


def _first_line(exc: BaseException) -> str:
    """The first line of an error from MLflow or its database, cut at a word (at most about 300 characters)."""
    line = (str(exc).strip().splitlines() or [""])[0]
    return line if len(line) <= 300 else line[:300].rsplit(" ", 1)[0] + " …"


def open_error(uri: str, exc: Exception) -> TrackingError:
    """Why the store ``uri`` cannot be opened, in one sentence: a store of another MLflow's schema says which
    MLflow to upgrade (MLflow says "out-of-date" of a newer store too, and ``mlflow db upgrade`` cannot help).
    A password in ``uri`` is said as ``***``, in MLflow's words too."""
    error = _open_error(shown_uri(uri), exc)
    return TrackingError(shown_uri(uri, str(error)))


def _open_error(uri: str, exc: Exception) -> TrackingError:
    found = re.search(r"out-of-date database schema \(found version (\w+),", str(exc))
    again = "or name another store with --tracking-uri / MLFLOW_TRACKING_URI."
    if found is not None and _known_schema(found.group(1)):
        return TrackingError(
            f"The tracking store {uri} was made by an older MLflow; back it up, then upgrade it with "
            f"`mlflow db upgrade {shlex.quote(uri)}`, {again}"
        )
    if found is not None and found.group(1) != "None":
        from mlflow import __version__

        return TrackingError(
            f"The tracking store {uri} was made by a newer MLflow than this one ({__version__}); upgrade MLflow "
            f"(pip install -U mlflow), {again}"
        )
    if "filesystem tracking backend" in str(exc):  # MLflow's migration notice, cut, hid the way out
        name = uri.rstrip("/").rsplit("/", 1)[-1] or "runs"
        return TrackingError(
            f"The tracking store {uri} is a folder path: MLflow's retired folder store, which it opens only with "
            f"MLFLOW_ALLOW_FILE_STORE=true; give a SQLite file instead (a path ending in .db, such as {name}.db) "
            "or a tracking server's http:// URL, with --tracking-uri / MLFLOW_TRACKING_URI."
        )
    return TrackingError(
        f"Cannot open the tracking store {uri} ({reason(exc)}); check --tracking-uri / MLFLOW_TRACKING_URI."
    )


def _known_schema(revision: str) -> bool:
    """Whether ``revision`` is one of this MLflow's database schemas (an older store's), not a newer MLflow's."""
    from alembic.script import ScriptDirectory
    from mlflow.store import db_migrations

    try:
        return ScriptDirectory(str(Path(db_migrations.__file__).parent)).get_revision(revision) is not None
    except Exception:  # alembic's "Can't locate revision": a schema this MLflow does not know
        return False


def dataset_folder(dataset: str | None) -> tuple[str, ...]:
    """What the fits of the folder ``dataset`` names (``./my-digits``) recorded: the folder, resolved as a fit records
    it, and the registered dataset whose published files it holds (a fit of those records its name, not the folder:
    ``runs --dataset ~/fashion`` listed none of its runs); none where it names no folder."""
    try:
        path = expand_home(dataset, ValueError) if dataset else None
    except ValueError:  # ~nosuchuser/...
        return ()
    if path is None or not path.is_dir():
        return ()
    published = published_name(path)
    return (str(path.resolve()),) if published is None else (str(path.resolve()), published)


@contextlib.contextmanager
def staged(files: dict[str, bytes]) -> Iterator[str]:
    """A temporary folder holding ``files`` (name -> bytes) for MLflow to copy into a run, removed after. A
    temporary folder that cannot take them (full) is said as such: it was "The tracking store ... failed (No space
    left on device); check that it is reachable and writable", of a store that was neither."""
    folder = None
    try:
        folder = tempfile.TemporaryDirectory(prefix="mnistlab-run-")
        for name, data in files.items():
            (Path(folder.name) / name).write_bytes(data)
    except OSError as exc:
        if folder is not None:
            folder.cleanup()
        raise TrackingError(
            f"Cannot write a run's files in the temporary folder {tempfile.gettempdir()} ({exc.strerror or exc}) "
            "to record them; free space there, or set TMPDIR to a folder with room."
        ) from None
    with folder:
        yield folder.name
