"""Open a TCP connection within one deadline: the host name's lookup, the connection and what follows on it.

``socket.create_connection`` gives each of a host's addresses its own
``timeout`` and looks the name up with no bound at all: ``getaddrinfo``
waits as long as the system's resolver does, which ``resolv.conf`` can make
minutes. A download that promises ``timeout`` seconds keeps it from the
first packet, so the three share one deadline here, and with them an https
proxy's tunnel (``HTTPConnectWithin``).
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any

__all__ = ["ConnectTimeout", "HTTPConnectWithin", "TUNNEL_REPLY_BYTES", "connect_within", "resolve_within"]

# A proxy's reply to CONNECT is a status line and a few headers; one that sends more is sending something else.
TUNNEL_REPLY_BYTES = 64 * 1024


class ConnectTimeout(TimeoutError):
    """The deadline ran out looking a host up or connecting to it; the message names the host."""


# The lookups still running, one per (host, port): a lookup given up on runs on in its thread until the
# resolver answers (its own timeouts end it, at most minutes), and a later file from the same mirror waits
# on that one instead of starting another, so a resolver that never answers costs one thread a host.
_LOOKUPS: dict[tuple[str, int], Future] = {}
_LOOKUPS_LOCK = threading.Lock()


def resolve_within(host: str, port: int, seconds: float) -> list:
    """``getaddrinfo(host, port)`` for a stream socket, given up after ``seconds`` with a ConnectTimeout naming ``host``."""
    try:  # an address needs no lookup, nor a thread to bound one
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    with _LOOKUPS_LOCK:
        lookup = _LOOKUPS.get((host, port))
        if lookup is None:
            lookup = _LOOKUPS[(host, port)] = Future()
            threading.Thread(target=_look_up, args=(host, port, lookup), name="mnistlab-lookup", daemon=True).start()
    try:
        return lookup.result(timeout=max(seconds, 0.0))
    except TimeoutError:
        raise ConnectTimeout(f"the name {host} was not resolved within {seconds:,.1f} s (no DNS answer)") from None


def _look_up(host: str, port: int, lookup: Future) -> None:
    try:
        lookup.set_result(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
    except BaseException as exc:  # handed to whoever waits on it, if anyone still does
        lookup.set_exception(exc)
    finally:
        with _LOOKUPS_LOCK:
            _LOOKUPS.pop((host, port), None)


def connect_within(address: tuple[str, int], seconds: float, source_address=None) -> socket.socket:
    """A socket connected to ``address`` (host, port) within ``seconds`` in all, lookup included.

    The socket's timeout is what is left of ``seconds``: a TLS handshake on it
    is bounded in total by that timeout (Python's ``ssl`` says so since 3.5),
    so the handshake shares the deadline too. Raises ConnectTimeout naming the
    host when the time runs out, else the first address's OSError.
    """
    deadline = time.monotonic() + seconds
    host, port = address
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in resolve_within(host, port, seconds):
        left = deadline - time.monotonic()
        if left <= 0:
            errors.append(TimeoutError())
            break
        try:
            return _connect_one(socket.socket(family, kind, proto), sockaddr, deadline, source_address)
        except OSError as exc:
            errors.append(exc)
    if any(isinstance(exc, TimeoutError) for exc in errors):
        raise ConnectTimeout(f"{host} port {port} could not be connected to within {seconds:,.1f} s")
    raise errors[0] if errors else OSError(f"the name {host} has no address to connect to")


def _connect_one(sock: socket.socket, sockaddr, deadline: float, source_address) -> socket.socket:
    """``sock`` connected to ``sockaddr`` before ``deadline``, its timeout what is left; closed if it is not."""
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))  # the caller saw time left: a moment may have passed
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
        left = deadline - time.monotonic()
        if left <= 0:  # a timeout of 0 would make the socket non-blocking, not bounded
            raise TimeoutError("connected as the time ran out")
        sock.settimeout(left)
        return sock
    except BaseException:
        sock.close()
        raise


class HTTPConnectWithin:
    """An http.client connection (the class after this one in the bases) set up in ``seconds`` in all.

    ``connect_in(seconds)`` looks the host up and connects (``connect_within``),
    then, through an https proxy, has its tunnel opened (CONNECT) and the TLS
    handshake to the target made in what is left. http.client reads a proxy's
    reply to CONNECT with the socket's timeout for each read and, before
    Python 3.12, any number of header lines: a proxy trickling its reply, or
    sending headers for ever, held the connection for ever.
    """

    host: str  # the proxy's, through one
    port: int
    sock: Any
    _tunnel_host: str | None  # http.client's: the target through a proxy, else None
    _tunnel_port: int
    response_class: Any  # http.client's HTTPResponse; for the reply to CONNECT, one reading a ``_Reply``
    through_proxy = False  # True: ``host`` is an http proxy the request goes through (an https one tunnels)

    def connect_in(self, seconds: float) -> None:
        """The connection's connect(), all of it within ``seconds``; else a TimeoutError naming what did not answer."""
        self._within = (time.monotonic() + seconds, seconds)
        # http.client makes its socket with _create_connection (socket.create_connection, set in its __init__).
        self._create_connection = lambda address, _timeout, source: self._connect_to(address, seconds, source)
        try:
            super().connect()  # type: ignore[misc]  # the connection class's
        except ConnectTimeout:
            raise
        except TimeoutError:  # the handshake's, which says only "_ssl.c:989: The handshake operation timed out"
            target = f"{self._tunnel_host} through the proxy {self._proxy}" if self._tunnel_host else self.host
            raise TimeoutError(f"{target} was not connected to (TLS handshake) within {seconds:,.1f} s") from None

    @property
    def _proxy(self) -> str:
        return f"{self.host}:{self.port}"

    def _proxy_fix(self) -> str:
        scheme = "https" if self._tunnel_host else "http"
        return f"set {scheme}_proxy / {scheme.upper()}_PROXY to a proxy that answers, or unset it"

    def _connect_to(self, address: tuple[str, int], seconds: float, source) -> socket.socket:
        """``connect_within``; a proxy that cannot be reached named as the proxy, not taken for the mirror."""
        try:
            return connect_within(address, seconds, source)
        except OSError as exc:
            if not (self._tunnel_host or self.through_proxy):
                raise
            why = f"no answer within {seconds:,.1f} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            said = f"the proxy {self._proxy} could not be reached ({why}; {self._proxy_fix()})"
            raise (ConnectTimeout(said) if isinstance(exc, TimeoutError) else OSError(said)) from None

    def _tunnel(self) -> None:
        """http.client's CONNECT, its reply read before the deadline and refused past ``TUNNEL_REPLY_BYTES``."""
        deadline, seconds = self._within
        # http.client reads the reply through response_class(sock): here, a file of the socket that keeps both bounds.
        self.response_class = lambda sock, **kwargs: http.client.HTTPResponse(
            _Reply(sock, deadline),  # type: ignore[arg-type]  # HTTPResponse calls only its makefile()
            **kwargs,
        )
        tunnel = f"the proxy {self._proxy} did not open a tunnel to {self._tunnel_host}:{self._tunnel_port}"
        fix = self._proxy_fix()
        try:
            super()._tunnel()  # type: ignore[misc]  # the connection class's
            left = deadline - time.monotonic()
            if left <= 0:  # a timeout of 0 would make the socket non-blocking, not bounded
                raise TimeoutError
            self.sock.settimeout(left)  # the TLS handshake's, through the tunnel: what is left
        except TimeoutError:
            raise ConnectTimeout(f"{tunnel} within {seconds:,.1f} s ({fix})") from None
        except (OSError, http.client.HTTPException) as exc:  # refused (407, 403), hung up, an endless reply
            raise OSError(f"{tunnel} ({str(exc) or type(exc).__name__}; {fix})") from None
        finally:
            del self.response_class  # the class's own again, for the responses through the tunnel


class _Reply:
    """A socket whose file (the one http.client reads a proxy's reply from) is a ``_ReplyReader``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_ReplyReader(self._sock, self._deadline))


class _ReplyReader(io.RawIOBase):
    """A socket's reads, each waiting only until ``deadline``, ``TUNNEL_REPLY_BYTES`` of them in all."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._raw, self._deadline = sock, sock.makefile("rb", buffering=0), deadline
        self._bytes_left = TUNNEL_REPLY_BYTES

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if not self._bytes_left:
            raise OSError(f"its reply to CONNECT ran past {TUNNEL_REPLY_BYTES:,} bytes")
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self._sock.settimeout(left)
        n = self._raw.readinto(memoryview(b)[: self._bytes_left]) or 0
        self._bytes_left -= n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()
