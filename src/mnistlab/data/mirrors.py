"""The mirrors a download tries: the caller's, or ``$MNISTLAB_MIRRORS``'s before the data set's own.

Each is checked to be a URL urllib can fetch before any is tried: one
misspelt ("mirror.example.org/mnist", no scheme) was tried and failed as
"unknown url type", blamed on the network, or passed over without a word
when a public mirror served the files.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from mnistlab.errors import DatasetError, ParameterError

__all__ = ["ascii_url", "checked_mirrors", "env_mirrors", "masked_credentials", "shown_url", "without_credentials"]

_SCHEMES = ("http", "https", "file")  # a file:// URL is a folder of this machine, read as a mirror


def checked_mirrors(mirrors) -> tuple[str, ...] | None:
    """``mirrors`` as a tuple of URLs; a string (taken a character at a time), anything else or a bad URL refused."""
    if mirrors is None:
        return None
    if not isinstance(mirrors, list | tuple) or not all(isinstance(url, str) for url in mirrors):
        raise ParameterError(
            "mirrors",
            f"{{param}} must be a tuple of base URLs, such as ('https://example.org/mnist/',), got {mirrors!r}.",
        )
    for url in mirrors:
        if (why := _not_a_url(url)) is not None:
            raise ParameterError(
                "mirrors",
                f"{{param}} holds {shown_url(url)!r}, {why}; give base URLs such as 'https://example.org/mnist/'.",
            )
    return tuple(mirrors)


def env_mirrors() -> tuple[str, ...]:
    """The URLs ``$MNISTLAB_MIRRORS`` holds, separated by white space; a ``DatasetError`` for one that is no URL."""
    urls = tuple(os.environ.get("MNISTLAB_MIRRORS", "").split())
    for url in urls:
        if (why := _not_a_url(url)) is not None:
            raise DatasetError(
                f"MNISTLAB_MIRRORS holds {shown_url(url)!r}, {why}; write each mirror as a full URL, such as "
                "https://example.org/mnist/, separated by spaces, or unset it."
            )
    return urls


def _not_a_url(url: str) -> str | None:
    """Why ``url`` is no base URL of a mirror, or None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", a port that is no number
        return f"which is not a valid URL ({exc})"
    if parts.scheme.lower() not in _SCHEMES:
        return "which is not an http or https URL"
    if parts.scheme.lower() != "file" and not parts.hostname:
        return "which names no host"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "which holds a space or a control character (write a space as %20)"
    return None


def ascii_url(url: str) -> str:
    """``url`` with the characters of its path and query that are not ASCII percent-encoded (UTF-8), as a browser
    sends them: http.client takes ASCII only. The host is left as it is (its lookup and Host header take IDNA)."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    path, query = (quote(text, safe="".join(map(chr, range(33, 127)))) for text in (parts.path, parts.query))
    return urlunsplit(parts._replace(path=path, query=query))


def _userinfo(url: str) -> str | None:
    """The ``USER:PASSWORD`` (or ``TOKEN``) before the ``@`` of ``url``'s host, as written; None where there is none."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # no URL: nothing to read a password from
        return None
    return netloc.rpartition("@")[0] if "@" in netloc else None


def masked_credentials(url: str) -> tuple[str, str] | None:
    """(``USER:PASSWORD@``, ``USER:***@``) of a URL that holds credentials (a token alone: ``TOKEN@`` and ``***@``);
    None for one that holds none."""
    info = _userinfo(url)
    if info is None:
        return None
    user, colon, _ = info.partition(":")
    return f"{info}@", f"{user}:***@" if colon else "***@"


def shown_url(url: str) -> str:
    """``url`` as errors say it: a password in it (``https://USER:PASSWORD@host/``) as ``***``, a token alone too.
    Errors are kept in logs and shared; a mirror's password never is in clear."""
    found = masked_credentials(url)
    return url if found is None else url.replace(*found, 1)


def without_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``USER:PASSWORD@``, and the HTTP Basic ``Authorization`` they make (None: no credentials).
    urllib sent neither: it took ``USER:PASSWORD@host`` for the host's name, and the download failed as a host
    not found."""
    info = _userinfo(url)
    if info is None:
        return url, None
    parts = urlsplit(url)
    user, _, password = info.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])), f"Basic {token}"
