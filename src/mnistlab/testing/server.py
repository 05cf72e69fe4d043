"""A real web server on 127.0.0.1 for tests: ``running_server(app)``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["running_server"]


@contextmanager
def running_server(
    app: Any,
    *,
    log_level: str = "warning",
    start_timeout: float = 120.0,
    stop_timeout: float = 10.0,
    **uvicorn_options: Any,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a port the OS picks) in a thread; yield its base URL.

    ``uvicorn_options`` go to ``uvicorn.Config`` (all but ``host`` and ``port``): serve as ``mnistlab serve``
    does with ``http=mnistlab.web.protocol.protocol_for(limits)``. A server that does not start within
    ``start_timeout`` seconds, or whose app fails to start up, raises ``RuntimeError``; the server is stopped
    and its port freed on leaving the block, whether it started or not. Requests still in flight then get
    ``stop_timeout`` seconds (uvicorn's ``timeout_graceful_shutdown``, unless that is given) before they are
    cancelled, so that the server's thread ends.
    """
    uvicorn_options.setdefault("timeout_graceful_shutdown", stop_timeout)
    import uvicorn  # only tests that serve need it

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, **uvicorn_options)
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(config)
    thread = threading.Thread(target=_serve, args=(server, sock), daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, start_timeout)
        yield f"http://127.0.0.1:{port}"
    finally:  # started or not: stop the server and free its port
        server.should_exit = True
        thread.join((uvicorn_options["timeout_graceful_shutdown"] or 0) + 10)  # None given: uvicorn waits on
        sock.close()


def _serve(server: Any, sock: socket.socket) -> None:
    """Run the server; uvicorn exits (``SystemExit``) when the app fails to start up: end the thread quietly."""
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass


def _wait_started(server: Any, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server did not start: the app failed to start up (see its log above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test server did not start within {timeout:g} s; give a longer start_timeout")
        time.sleep(0.02)
