"""The web face: the draw-a-digit page and its JSON API (``mnistlab serve``)."""

from mnistlab.web.app import create_app, serve
from mnistlab.web.protocol import ConnectionLimits

__all__ = ["create_app", "serve", "ConnectionLimits"]
