"""Where uvicorn's h11 protocol falls short of HTTP/1.1, the request or its answer as ``GuardedProtocol`` reshapes it.

``origin_form``: a request target in absolute form (``GET http://host/path``) as the path it names;
``closing_unless_continued``: an answer given before the body a client held back for 100 Continue closes
the connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.types import Message, Scope, Send

__all__ = ["origin_form", "closing_unless_continued"]


def closing_unless_continued(send: Send, cycle: Any) -> Send:
    """``send`` of a request that waits for 100 Continue before its body: an answer begun before the body was asked
    for (a 413, 415, 405...) closes the connection. Its client need not send that body (RFC 9110, 10.1.1), and the
    server would take its next request for the body."""

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start" and cycle.waiting_for_100_continue:
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing_send


def origin_form(scope: Scope, root: str) -> Scope:
    """``scope`` of a request whose target is in absolute form (``http://host/path?query``, which an HTTP/1.1 server
    must accept: RFC 9112, 3.2.2), which uvicorn's h11 protocol leaves whole in the path, with the path it names:
    what follows the authority, "/" if nothing does. Any other target (``OPTIONS *``) is left as it is."""
    raw = scope["raw_path"][len(root) :]  # the query is not in it
    scheme, sep, rest = raw.partition(b"://")
    if not (sep and scheme.isalpha()):
        return scope
    raw_path = b"/" + rest.partition(b"/")[2]
    return {**scope, "path": root + unquote(raw_path.decode("ascii")), "raw_path": root.encode("ascii") + raw_path}
