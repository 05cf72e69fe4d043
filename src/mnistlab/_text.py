"""File names as valid Unicode text, for JSON and for stores that take nothing else.

Linux file names are bytes. Python names a byte its file system codec cannot
decode with a lone surrogate (``surrogateescape``: b"caf\\xe9" is "caf\\udce9";
under ``LC_ALL=C`` with UTF-8 mode off, the codec is ASCII and "café" is
"caf\\udcc3\\udca9"). Such a string is no Unicode: UTF-8 cannot encode it
(MLflow's store, a web answer), and ``json.dumps`` writes it as an escaped
lone surrogate, which JSON readers (jq, JavaScript, Rust's serde) turn into
U+FFFD or refuse. ``path_text`` gives the name's bytes back as text: UTF-8 as
its characters, any other byte as ``\\xe9``, as Python's ``backslashreplace``
writes it; ``text_path`` reads such a text back as the path it names.
"""

from __future__ import annotations

import os
import re

__all__ = ["path_text", "json_safe", "text_path"]

_ESCAPED = re.compile(rb"\\x([89a-f][0-9a-f])")  # what backslashreplace writes for a byte not in UTF-8


def path_text(text: str) -> str:
    """``text`` (a path or file name as Python's ``os`` functions give it) as valid Unicode: its UTF-8
    characters as they are, a byte that is not UTF-8 as a backslash escape (``caf\\xe9``)."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")  # a file name's own bytes
    except UnicodeEncodeError:  # a lone surrogate no file name holds: escaped too
        return text.encode("utf-8", "backslashreplace").decode()
    return raw.decode("utf-8", "backslashreplace")


def text_path(text: str) -> str:
    """The path ``path_text`` wrote as ``text`` (a folder a run recorded): its ``\\xNN`` escapes as those bytes
    again, where the text has some and names no path itself."""
    if "\\x" not in text or os.path.lexists(text):
        return text
    return os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m[1], 16)]), text.encode("utf-8", "surrogateescape")))


def json_safe(value):
    """``value`` (what a ``--json`` line or a store holds: dicts, lists, text, numbers) with every text in it,
    keys included, made ``path_text``; the rest as it is."""
    if isinstance(value, str):
        return path_text(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
