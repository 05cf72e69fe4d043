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
    app: Any, *, limits: Any = None, log_level: str = "warning", start_timeout: float = 120.0
) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a port the OS picks) in a thread, as ``mnistlab serve`` serves it
    (uvicorn with the connection ``limits`` of ``mnistlab.web.protocol``); yield its base URL."""
    import uvicorn  # only tests that serve need it

    from mnistlab.web.protocol import ConnectionLimits, server_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(app, host="127.0.0.1", port=port, limits=limits or ConnectionLimits(), log_level=log_level)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
