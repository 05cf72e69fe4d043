"""The sha256 of the user's code behind a model: what decides, with its parameters, whether a recorded fit is
the same one (``reuse``). Files of installed packages and of mnistlab are left out: their versions are recorded."""

from __future__ import annotations

import hashlib
import inspect
import sys
import sysconfig
import types
import uuid
from pathlib import Path

__all__ = ["built_code_sha256", "source_sha256"]


def built_code_sha256(code_sha256: str | None, estimator) -> str | None:
    """The sha256 of all of the user's code behind ``estimator``: the spec's file (``code_sha256``, a
    contender's) and every other file of the user's that defines a class of it, of its parameters' objects, or of
    a torch module's layers (a net in ``layers.py`` built by ``models.py:make_model``), and every file of the
    user's that those files import (``acts.py``, whose function the net's forward calls). Files of installed packages and of
    mnistlab are left out: their versions are recorded. With no other file it is ``code_sha256`` itself."""
    parts = _parts(estimator)
    if any(_unfiled(type(part)) for part in parts):  # typed into a notebook, `python -c` or `python -`: no file
        return f"unfiled code {uuid.uuid4().hex}"  # holds its code, so no edit of it shows: never the same key
    files = sorted(_imported_files(_users_files(parts)))
    if not files:
        return code_sha256
    digest = hashlib.sha256(str(code_sha256).encode())
    for path in files:
        digest.update(f"{path}\0".encode("utf-8", "surrogateescape") + hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def _parts(estimator) -> list:
    """``estimator``, its parameters' values and, for a torch module among them, its layers."""
    parts: list = [estimator]
    if hasattr(estimator, "get_params"):
        parts += [v for v in estimator.get_params(deep=True).values() if not isinstance(v, (str, bytes, int, float))]
    torch = sys.modules.get("torch")  # a module can only exist once torch has been imported
    for part in list(parts):
        if torch is not None and isinstance(part, torch.nn.Module):
            parts += list(part.modules())  # a net's layers, whose classes may live in other files
    return parts


def _unfiled(cls: type) -> bool:
    """Whether ``cls`` was defined where no file holds its code (its module has no file: ``__main__`` of a
    notebook or of ``python -c``, or ``<stdin>``); Python's built-in modules are files of the interpreter."""
    if cls.__module__ in sys.builtin_module_names:
        return False
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return not (file and Path(file).is_file())


def _users(path: str) -> bool:
    """Whether ``path`` is a file of the user's: not of Python's, an installed package's or mnistlab's."""
    installed = [Path(p).resolve() for p in {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")}]
    installed.append(Path(__file__).resolve().parents[1])  # mnistlab's own package
    return Path(path).is_file() and not any(Path(path).resolve().is_relative_to(p) for p in installed)


def _users_files(parts: list) -> set[str]:
    """Source files of the user's own classes among ``parts``."""
    files = set()
    for part in parts:
        try:
            path = inspect.getsourcefile(type(part))
        except (TypeError, OSError):  # a built-in class
            continue
        if path and _users(path):
            files.add(str(Path(path).resolve()))
    return files


def _imported_files(files: set[str]) -> set[str]:
    """``files`` and the files of the user's modules that their modules import, and those these import, and so
    on (``acts.py``, whose function a net's forward calls): their code is the model's as much as its classes'."""
    if not files:
        return files
    names = {Path(f).name for f in files}  # a name's check first: resolving each of torch's 2,800 modules took 0.14 s
    named = [m for m in list(sys.modules.values()) if Path(str(getattr(m, "__file__", None))).name in names]
    seen, todo = set(files), [m for m in named if _file(m) in files]
    while todo:
        for value in list(vars(todo.pop()).values()):
            used = value if isinstance(value, types.ModuleType) else sys.modules.get(_module_name(value))
            path = _file(used)
            if isinstance(used, types.ModuleType) and path and path not in seen and _users(path):
                seen.add(path)
                todo.append(used)
    return seen


def _file(module) -> str:
    """The whole path of the file ``module`` was loaded from, or ``""``."""
    path = getattr(module, "__file__", None)
    return str(Path(path).resolve()) if isinstance(path, str) and path else ""


def _module_name(value) -> str:
    """The module that defines ``value`` (a function, a class), or ``""``."""
    try:
        name = getattr(value, "__module__", "")
    except Exception:  # an object whose attribute lookup fails its own way
        return ""
    return name if isinstance(name, str) else ""


def source_sha256(module) -> str | None:
    """The sha256 of the file a module was loaded from (None for built-ins and interactive code)."""
    try:
        path = inspect.getsourcefile(module) if module is not None else None
    except TypeError:
        path = None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None
