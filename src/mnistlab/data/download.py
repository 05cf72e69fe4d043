"""Download a registered dataset from its mirrors, verified by the sha256 of the decompressed bytes.

Each file is streamed to a temp file beside its final place and renamed only
once its content matches; a mirror serving bad or partial bytes is skipped for
the next one.
"""

from __future__ import annotations

import http.client
import io
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from mnistlab._atomic import locked_temp, remove_leftovers
from mnistlab.data.cache import cache_root
from mnistlab.data.connect import HTTPConnectWithin
from mnistlab.data.home import expand_home, refuse_empty_path
from mnistlab.data.idx import GZIP_MAGIC, idx_sha256, read_idx_header
from mnistlab.data.inplace import keep_in_place
from mnistlab.data.mirrors import ascii_url, checked_mirrors, env_mirrors, shown_url, without_credentials
from mnistlab.data.registry import DATASETS, ROLES
from mnistlab.errors import (
    ChecksumError,
    DatasetError,
    DownloadError,
    IDXFormatError,
    LocalWriteError,
    ParameterError,
)

__all__ = ["download_dataset"]

# After the first ``timeout`` seconds a file must average this rate, so a mirror
# that trickles bytes is given up for the next: MNIST's 9.9 MB training images
# take at most about 40 minutes at it, a server sending a byte a second is
# left after ``timeout`` seconds instead of running for days.
MIN_RATE = 4096  # bytes per second
# The longest wait for a server: any longer is no wait anyone means, and past ~1e10 s a socket refuses it (OverflowError).
MAX_TIMEOUT = 86_400.0


def download_dataset(
    name: str,
    dest: Path | None = None,
    *,
    mirrors: tuple[str, ...] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    timeout: float = 30.0,
    min_rate: float = MIN_RATE,
) -> dict[str, Path]:
    """Download and verify the four files of ``name`` into ``dest`` (default: the cache).

    Each file is streamed to a temp file beside its final place and renamed only
    once its decompressed sha256 matches; a mirror serving bad or partial bytes is
    skipped for the next. ``progress(filename, done_bytes, total_bytes)`` is called
    as bytes arrive. ``timeout`` bounds each wait for the server, and the whole of
    each connection (looking the host up, connecting, an https proxy's tunnel, a TLS handshake); past the first
    ``timeout`` seconds a file must arrive at ``min_rate`` bytes per second on
    average, or that mirror is left for the next: its headers, framing and
    trailers count as much as its body, and more than twice the data set's
    ``max_file_bytes`` in all is refused too.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DatasetError(
            f"No download is known for {name!r}; expected one of {', '.join(DATASETS)} "
            "(scikit-learn's digits come with scikit-learn)."
        )
    _check_pace(timeout, min_rate)
    if progress is not None and not callable(progress):  # else a TypeError traceback at the first bytes
        raise ParameterError(
            "progress", f"{{param}} must be a function (something callable) or None, got {progress!r}."
        )
    spec = DATASETS[name]
    mirrors = checked_mirrors(mirrors)
    mirrors = mirrors if mirrors is not None else env_mirrors() + spec.mirrors
    in_cache = dest is None
    if dest is not None:
        refuse_empty_path(dest, "dest")
    folder = (
        cache_root() / name
        if dest is None
        else expand_home(dest, lambda why: ParameterError("dest", f"{{param}} {dest} {why}; give its full path."))
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(folder, exc, in_cache) from None
    try:
        return _download_into(spec, folder, mirrors, progress, (timeout, min_rate), in_cache)
    except _LocalFailure as exc:
        raise _cannot_write(folder, exc.args[0], in_cache) from None


def _check_pace(timeout, min_rate) -> None:
    """Refuse a ``timeout`` or ``min_rate`` urlopen or the rate check could not use, before any mirror is tried."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        raise ParameterError(
            "timeout",
            f"{{param}} must be a positive number of seconds, at most {MAX_TIMEOUT:,.0f} (a day), got {timeout!r}.",
        )
    if isinstance(min_rate, bool) or not isinstance(min_rate, int | float) or not 0 <= min_rate < math.inf:
        raise ParameterError(
            "min_rate", f"{{param}} must be a number of bytes per second, 0 or more, got {min_rate!r}."
        )


def _download_into(spec, dest: Path, mirrors, progress, pace: tuple[float, float], in_cache: bool) -> dict[str, Path]:
    for role in ROLES:
        remove_leftovers(dest / spec.files[role], ".part")
    # All four checked before any is downloaded: a file of other data refused leaves the folder as it was.
    out = {
        role: dest / spec.files[role] for role in ROLES if keep_in_place(dest / spec.files[role], spec, role, in_cache)
    }
    for role in (role for role in ROLES if role not in out):
        fname = spec.files[role]
        final = dest / fname
        problems = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                _fetch_verified(url, final, spec.sha256[role], progress, pace, spec.max_file_bytes)
            except (OSError, http.client.HTTPException, ValueError, IDXFormatError, ChecksumError) as exc:
                problems.append(f"{shown_url(url)}: {_said(exc)}")  # a password in it as ***
                continue
            out[role] = final
            break
        else:
            reason = f"no mirror gave a verified {fname}: {'; '.join(problems) or 'none are set'}"
            error = DownloadError(
                f"Could not download {spec.name} ({reason}); check the network, or put the four IDX files in a "
                "folder and set MNISTLAB_DATA to it."
            )
            error.reason = reason
            raise error
    return {role: out[role] for role in ROLES}


def _said(exc: Exception) -> str:
    """What went wrong with a mirror, without the "<urlopen error ...>" urllib puts around a connection's failure."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    redirects = urllib.request.HTTPRedirectHandler
    if isinstance(exc, urllib.error.HTTPError) and str(exc.msg).startswith(redirects.inf_msg):  # three lines
        return f"it redirects in a loop, or more than {redirects.max_redirections} times (HTTP {exc.code})"
    if isinstance(exc, http.client.BadStatusLine) and not isinstance(exc, http.client.RemoteDisconnected):
        began = ascii(str(exc)[:40])  # what came in place of a status line: a TLS alert's bytes, a long line
        return f"its answer is not HTTP (it began {began}; check the mirror's scheme, http or https, and port)"
    return " ".join(str(exc).split())  # one line, whatever the server or library put in it


class _LocalFailure(Exception):
    """An OSError on this machine's side (creating, writing or renaming a file), not the mirror's: no retry."""


def _cannot_write(folder: Path, exc: OSError, in_cache: bool) -> LocalWriteError:
    fix = (
        "set XDG_CACHE_HOME to a folder you can write to, or MNISTLAB_DATA to a folder that holds the four IDX files"
        if in_cache
        else "download to a folder you can write to"
    )
    try:  # what is in the way; a folder that cannot be looked into (not to be entered, a name too long) says nothing
        dangling = next((p for p in (folder, *folder.parents) if p.is_symlink() and not p.exists()), None)
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    except OSError:
        dangling = blocker = None
    if dangling is not None:  # mkdir says "File exists" of a link whose target is gone: say what is wrong
        return LocalWriteError(
            f"mnistlab cannot write the download in {folder}: {dangling} is a link to {os.readlink(dangling)}, "
            f"which does not exist (a drive not mounted?); mount it, remove the link, or {fix}."
        )
    if blocker is not None:  # "File exists", "Not a directory": not a matter of space or permissions
        return LocalWriteError(
            f"mnistlab cannot write the download in {folder}: {blocker} is a file, not a folder; move or remove it, "
            f"or {fix}."
        )
    return LocalWriteError(
        f"mnistlab cannot write the download in {folder} ({exc.strerror or exc}); "
        f"free space there or make it writable, or {fix}."
    )


def _fetch_verified(url: str, final: Path, sha256: str, progress, pace: tuple[float, float], max_bytes: int) -> None:
    """Download ``url`` to ``final`` if its content has ``sha256``; ``pace`` is (timeout, min_rate)."""
    fd, tmp = _local(locked_temp, final, ".part")
    try:
        # Unbuffered: a write that fails (disk full) fails in _stream, where it is told from the network's errors.
        # Open, hence locked, until the file is in place.
        with os.fdopen(fd, "wb", buffering=0) as out:
            with _open_paced(url, _Pace(*pace, most=2 * max_bytes)) as resp:
                _stream(resp, out, final.name, progress, max_bytes)
            _local(os.fsync, fd)
            _check_content(Path(tmp), sha256, max_bytes)
            _local(os.replace, tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _check_content(path: Path, sha256: str, max_bytes: int) -> None:
    """Refuse a served file whose content is not ``sha256``, inflating no more than ``max_bytes`` to tell.

    A gzip file may declare up to 1032 times its size: its header is read
    first, so a bomb costs a few bytes of reading, not gigabytes of inflating.
    """
    try:
        dtype, shape = read_idx_header(path)
        declared = math.prod(shape) * dtype.itemsize
        if declared > max_bytes:
            raise ChecksumError(
                f"the served file declares {declared:,} bytes of data, more than the {max_bytes:,} a file of this "
                "data set can be"
            )
        got = idx_sha256(path, max_bytes=max_bytes)
    except IDXFormatError:
        raise ChecksumError("served bytes are not a valid IDX file (corrupt copy)") from None
    if got != sha256:
        raise ChecksumError(f"served bytes have sha256 {got[:12]}..., expected {sha256[:12]}...")


def _local(action, *args):
    """``action(*args)``, a local file operation: its OSError is this machine's, not the mirror's."""
    try:
        return action(*args)
    except OSError as exc:
        raise _LocalFailure(exc) from None


def _write_all(out, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:  # an unbuffered write may take only part of the chunk (a disk nearly full)
        view = view[out.write(view) :]


def _stream(resp, out, name: str, progress, max_bytes: int) -> None:
    """Copy the body to ``out``, refusing more than ``max_bytes`` and a start that is neither gzip nor IDX
    (the pace of the transfer is ``_Pace``'s to check, on every read from the socket)."""
    total = resp.headers.get("Content-Length")
    total = int(total) if total and total.isdigit() else None
    if total is not None and total > max_bytes:
        raise ValueError(
            f"the server announced {total:,} bytes, more than the {max_bytes:,} a file of this data set can be"
        )
    done, head = 0, b""
    # read1 returns what has arrived, so progress moves with the bytes; http.client
    # ends the body early (b"") when the connection closes before Content-Length.
    for chunk in iter(lambda: resp.read1(1 << 16), b""):
        if len(head) < 2:
            head += chunk[: 2 - len(head)]
            if len(head) == 2 and head not in (GZIP_MAGIC, b"\0\0"):
                raise ValueError("the served bytes start as neither gzip nor IDX (an error page?)")
        done += len(chunk)
        if done > max_bytes:
            raise ValueError(f"the server sent more than the {max_bytes:,} bytes a file of this data set can be")
        _local(_write_all, out, chunk)
        if progress:
            progress(name, done, total)
    if total is not None and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")


class _Pace:
    """One file's transfer, checked before every wait on the server's socket.

    Every byte the server sends counts, its status line, headers, chunk
    framing and trailers as much as the body, so a server that trickles its
    headers or sends trailer lines for ever is left like one that trickles the
    file: after ``timeout`` seconds the bytes must average ``min_rate`` a second,
    and no more than ``most`` may come in all.
    """

    def __init__(self, timeout: float, min_rate: float, *, most: int) -> None:
        self.timeout, self.min_rate, self.most = timeout, min_rate, most
        self.start, self.received = time.monotonic(), 0

    def wait_left(self) -> float:
        """How long the next read may wait: ``timeout``, or less where the average would fall below ``min_rate``."""
        if self.received > self.most:
            raise OSError(f"the server sent more than {self.most:,} bytes in all (headers, framing and body)")
        if not self.min_rate:
            return self.timeout
        elapsed = time.monotonic() - self.start
        due = max(self.timeout, self.received / self.min_rate)  # past it, the average is below min_rate
        if elapsed >= due:
            raise OSError(
                f"the transfer averaged {self.received / elapsed:,.0f} bytes/s over {elapsed:,.1f} s, "
                f"below the {self.min_rate:,.0f} bytes/s mnistlab waits for"
            )
        return min(self.timeout, due - elapsed)


class _PacedReader(io.RawIOBase):
    """The socket's reads, each bounded by ``pace``; http.client reads the whole response through it."""

    def __init__(self, sock, pace: _Pace) -> None:
        super().__init__()
        # The socket's own file under ours: it keeps the socket open while the response is read, as http.client expects.
        self._sock, self._raw, self._pace = sock, sock.makefile("rb", buffering=0), pace

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self._sock.settimeout(self._pace.wait_left())
        try:
            n = self._raw.readinto(b) or 0
        except TimeoutError:
            self._pace.wait_left()  # says the average fell below min_rate, when that is what ended the wait
            raise
        self._pace.received += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _PacedSocket:
    """A connected socket whose response is read through a ``_PacedReader``; all else is the socket's own."""

    def __init__(self, sock, pace: _Pace) -> None:
        self._sock, self._pace = sock, pace

    def makefile(self, mode: str = "rb", *args, **kwargs):
        return io.BufferedReader(_PacedReader(self._sock, self._pace))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _PacedConnection(HTTPConnectWithin):
    """An http.client connection (the class after this one in the bases) whose socket, once connected (through
    an https proxy's tunnel and TLS set up, for https), is a ``_PacedSocket``."""

    def __init__(self, host, pace: _Pace, *, through_proxy: bool = False, **kwargs) -> None:
        super().__init__(host, **kwargs)  # type: ignore[call-arg]  # the connection class's
        self.pace, self.through_proxy = pace, through_proxy

    def connect(self) -> None:
        # Looking the name up, connecting, a proxy's tunnel and the TLS handshake share what is left of the
        # pace's wait, where each was given ``timeout`` of its own (a lookup and a tunnel no bound at all).
        self.connect_in(self.pace.wait_left())
        self.sock = _PacedSocket(self.sock, self.pace)


class _PacedHTTP(_PacedConnection, http.client.HTTPConnection):
    pass


class _PacedHTTPS(_PacedConnection, http.client.HTTPSConnection):
    pass


class _PacedHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """urllib's handlers of http and https URLs (redirects included), opening paced connections."""

    def __init__(self, pace: _Pace) -> None:
        urllib.request.HTTPSHandler.__init__(self)
        self.pace = pace

    def http_open(self, req):
        # Through an http proxy (http_proxy) urllib connects to the proxy and asks it for the full URL.
        return self.do_open(partial(_PacedHTTP, pace=self.pace, through_proxy=req.has_proxy()), req)

    def https_open(self, req):
        return self.do_open(partial(_PacedHTTPS, pace=self.pace), req, context=self._context)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, each one's own body left unread: urllib read it whole, asking for all its
    Content-Length at once, so a redirect announcing 1 TB was a MemoryError that stopped the download."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        fp.close()  # urllib's read of the body then returns nothing
        return new


class _NoFTP(urllib.request.FTPHandler):
    """In place of urllib's ftp handler, which a mirror's redirect reached: it knows no deadline nor rate, so a
    server trickling its greeting held a download for hours."""

    def ftp_open(self, req):
        raise urllib.error.URLError(f"mnistlab downloads over http and https only, not {shown_url(req.full_url)}")


def _open_paced(url: str, pace: _Pace):
    """``urlopen(url)``, every read of its response bounded by ``pace``."""
    opener = urllib.request.build_opener(_PacedHandler(pace), _Redirects, _NoFTP)
    plain, authorization = without_credentials(url)
    request = urllib.request.Request(ascii_url(plain))
    if authorization is not None:  # to this mirror only: never along a redirect to another server
        request.add_unredirected_header("Authorization", authorization)
    return opener.open(request, timeout=pace.timeout)
