"""Open a TCP connection within one deadline: the host name's lookup, the connection and what follows on it.

``socket.create_connection`` gives each of a host's addresses its own
``timeout`` and looks the name up with no bound at all: ``getaddrinfo``
waits as long as the system's resolver does, which ``resolv.conf`` can make
minutes. A download that promises ``timeout`` seconds keeps it from the
first packet, so the three share one deadline here.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Future

__all__ = ["ConnectTimeout", "connect_within", "resolve_within"]


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
