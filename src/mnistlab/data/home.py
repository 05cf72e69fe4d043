"""A leading ``~`` or ``~user`` in a path mnistlab is given, expanded as a shell would, or refused in words.

``Path.expanduser`` raises ``RuntimeError`` ("Could not determine home
directory.") for ``~nosuchuser/data``, or for ``~`` where no home folder can be
found: a traceback for a mistyped variable or option. Here the caller turns it
into its own error, with a sentence that says which path and what to give.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mnistlab.errors import ParameterError

__all__ = ["expand_home", "tilde_path", "home_path", "home_file", "setting_folder", "refuse_empty_path", "checked_path"]


def refuse_empty_path(path, param: str) -> None:
    """``ParameterError`` for an empty str: ``Path("")`` is the current folder, which no one means by giving nothing
    (an unset variable in a script); and for a value that is no path at all (None, a number, bytes), which ``Path``
    refused in a TypeError."""
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(param, f"{{param}} must be a path (a str or a Path), got {path!r}.")
    if isinstance(path, str) and not path:
        raise ParameterError(param, "{param} is empty, which would mean the current folder; give it a path.")


def checked_path(path, param: str) -> Path:
    """``path`` as a ``Path``, refused first as ``refuse_empty_path`` refuses one, a leading ``~`` taken for the
    home folder (``home_path``)."""
    refuse_empty_path(path, param)
    return Path(home_path(path, param))


def tilde_path(value, refuse: Callable[[str], Exception]):
    """``value`` as a ``Path``, a leading ``~`` (``~user/...``) taken for the home folder (that user's), as a shell
    takes it where it expands one and as the CLI's path options take it; ``refuse(why)`` raised where it cannot
    be. Any other value is returned as it is ("" too, and what is no path: refused later in words, not made the
    current folder; ``~draft.png`` alone, a file's name, as a shell leaves it where there is no such user)."""
    if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str):
        return value
    parts = Path(value).parts
    if not parts or not parts[0].startswith("~") or (parts[0] != "~" and len(parts) == 1):
        return value
    return expand_home(value, refuse)


def home_path(value, param: str):
    """``tilde_path`` for the Python API's parameter ``param``: a ``~user/...`` of no user is a ``ParameterError``
    that names the path, as the CLI's option does: taken as it is, ``load_model("~/models/knn")`` looked in a
    folder named ``~`` in the current one, and ``train_recipe(out="~/...")`` made one."""
    return tilde_path(value, lambda why: ParameterError(param, f"{{param}} {value} {why}; give its full path."))


def expand_home(path: str | os.PathLike, refuse: Callable[[str], Exception]) -> Path:
    """``path`` with a leading ``~``/``~user`` expanded; ``refuse(why)`` raised where it cannot be.

    ``why`` is the middle of a sentence that names the path ("starts with ~bob, but this machine has no user
    'bob'"): the caller puts what held the path before it, and what to do after it.
    """
    path = Path(path)
    home = os.environ.get("HOME")
    if os.name == "posix" and path.parts[:1] == ("~",) and home is not None and not os.path.isabs(home):
        # An empty or relative HOME is ignored, as an XDG folder's is: HOME= put the cache in /.cache, at the
        # root, and HOME=rel in a folder that moved with the current one. The password file's home, as unset.
        user = _user_name()
        if not user:
            raise refuse(f"starts with ~, but HOME={home!r} is not a full path and this user has no other home")
        path = Path("~" + user, *path.parts[1:])
    try:
        return path.expanduser()
    except RuntimeError:
        first = path.parts[0]
        user = first[1:]
        whose = f"this machine has no user {user!r}" if user else "no home folder is known here (HOME is not set)"
        raise refuse(f"starts with {first}, but {whose}") from None


def _user_name() -> str:
    """This user's name in the password file, "" where it has none."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return ""


def home_file(value, error: Callable[[str], Exception]) -> Path:
    """``Path(value)`` of a file the user names, a leading ``~`` the home folder (``tilde_path``); ``error`` with a
    sentence that names the path where it cannot be expanded."""
    return Path(tilde_path(value, lambda why: error(f"{value} {why}; give its full path.")))


def setting_folder(variable: str, default: str, error: type[Exception]) -> Path:
    """The folder ``$variable`` names (``XDG_CACHE_HOME``), else ``default`` (``~/.cache``), a leading ``~``
    expanded: a quoted value or a .env file leaves it to mnistlab, and taken as it is it made a folder named
    ``~`` in the current one. ``error`` with one sentence where it cannot be expanded.

    An empty or relative value is ignored, as the XDG Base Directory spec says: taken as it was, the cache
    and the saved models moved with the current folder."""
    value = os.environ.get(variable)
    if value:
        folder = expand_home(value, lambda why: error(f"{variable}={value} {why}; set it to a folder's full path."))
        if folder.is_absolute():
            return folder
    return expand_home(
        default,
        lambda why: error(
            f"{default}, where {variable} is unset or not a full path, {why}; set {variable} to a folder's full path."
        ),
    )
