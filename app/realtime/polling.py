"""Long-polling POSTs over the message size limit, answered at once.

python-engineio refuses such a POST, then closes its session waiting for the session's
queue to drain, which only a long-polling GET does: with no GET pending, the POST's
request, socket and greenlet were held until the process ended, for anyone, before any
login. Here the POST is answered 413 from its ``Content-Length`` alone (its body is never
read) and the session is closed without waiting, before Engine.IO sees the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import socketio

from app.realtime.packets import close

TOO_LARGE = b'"message too large: see SOCKETIO_MAX_HTTP_BUFFER_SIZE"'


class PollingGuard:
    """WSGI middleware in front of Flask-SocketIO's (``app.wsgi_app``), on its default
    path."""

    path = "/socket.io/"

    def __init__(self, wsgi_app: Callable, server: socketio.Server) -> None:
        self.wsgi_app = wsgi_app
        self.server = server

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and self._too_large(environ) and \
                environ.get("PATH_INFO", "").startswith(self.path):
            sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [""])[0]
            if sid in self.server.eio.sockets:
                close(self.server, sid, "a long-polling POST over the message size limit")
            start_response("413 Request Entity Too Large",
                           [("Content-Type", "text/plain"), ("Connection", "close")])
            return [TOO_LARGE]
        return self.wsgi_app(environ, start_response)

    def _too_large(self, environ: dict[str, Any]) -> bool:
        try:
            return int(environ.get("CONTENT_LENGTH") or 0) > self.server.eio.max_http_buffer_size
        except ValueError:
            return False
