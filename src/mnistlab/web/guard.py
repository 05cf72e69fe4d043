"""What every response carries, and HEAD wherever GET is.

``Guard`` wraps the whole application, outside even Starlette's error
middleware, so that every answer (the page, the API, static files, the docs,
404s, 422s, a 500) leaves with the same security headers:

- a Content-Security-Policy (``policy_for``): the page and the docs page
  may load only what this server sends, and run no inline script; every
  other response (JSON, errors, files) may load nothing. Each forbids
  framing (``frame-ancestors 'none'``);
- ``X-Frame-Options: DENY`` for browsers without frame-ancestors,
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``;
- ``Cache-Control: no-cache`` unless the response sets its own: a browser
  asks again (a 304 by ETag when nothing changed) instead of keeping the
  page and its files fresh for a tenth of their age, as it does with a
  Last-Modified alone, and running an upgraded server's page with the old
  script for days.

A HEAD request is routed as the GET it stands for, and its body dropped (the
headers, Content-Length included, are the GET's). A Range header is ignored,
as HTTP lets a server do: the page's files are sent whole (the largest,
Swagger UI's script, is 1.5 MB), and a malformed or unsatisfiable range is
not refused in Starlette's plain text (400, 416), outside the one-sentence
JSON every refusal is.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PAGE_CSP", "DOCS_CSP", "API_CSP", "policy_for", "security_headers", "Guard"]

_COMMON = "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# The draw-a-digit page: no CDN, no inline script; drawn and uploaded images are data: and blob: URLs.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    f"connect-src 'self'; {_COMMON}"
)
# Swagger UI from the fastapi-offline wheel, started by static/docs.js (no inline script); it draws
# its icons as data: images.
DOCS_CSP = (
    f"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; {_COMMON}"
)
# JSON answers, errors and files: nothing in them may load or run anything.
API_CSP = f"default-src 'none'; {_COMMON}"

# Pages by path; "/" only matches the page itself (static/ holds no page: the routes serve them, from pages/).
_PAGES = (("/docs", DOCS_CSP), ("/static-offline-docs/", DOCS_CSP))


def policy_for(path: str, content_type: str) -> str:
    """The Content-Security-Policy for a response to ``path`` of ``content_type``.

    Only an HTML page gets a policy that lets it load anything; every other
    response (JSON, errors, scripts, styles, images) gets ``API_CSP``.
    """
    if not content_type.startswith("text/html"):
        return API_CSP
    if path == "/":
        return PAGE_CSP
    for prefix, policy in _PAGES:
        if path == prefix or path.startswith(prefix):
            return policy
    return API_CSP


def security_headers(path: str, content_type: str = "application/json") -> list[tuple[bytes, bytes]]:
    """The headers every response to ``path`` carries, as ASGI (lower-case bytes) pairs."""
    return [
        (b"content-security-policy", policy_for(path, content_type).encode("ascii")),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


_NAMES = {name for name, _ in security_headers("/")}
_DROPPED = _NAMES | {b"accept-ranges"}  # the headers of a response that Guard sets, or takes away


def _app_path(scope: Scope) -> str:
    """The request's path below the app's mount point (uvicorn's ``--root-path``), as routes see it."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


class Guard:
    """ASGI middleware: security headers on every response; HEAD answered as GET without a body; Range ignored."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = scope["method"] == "HEAD"
        if head:  # a copy: the server's own scope still says HEAD, so it sends no body either
            scope = {**scope, "method": "GET"}
        if any(name == b"range" for name, _ in scope["headers"]):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"range"]}
        path = _app_path(scope)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ranges are not served (above): a file does not offer them.
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED]
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                extra = security_headers(path, content_type.decode("latin-1"))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    extra.append((b"cache-control", b"no-cache"))
                message = {**message, "headers": headers + extra}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, guarded_send)
