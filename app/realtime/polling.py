"""Long-polling requests Engine.IO would mishandle, answered before it sees them.

- A POST announcing more than the message size limit: python-engineio refuses it, then
  closes its session waiting for the session's queue to drain, which only a long-polling
  GET does; with no GET pending, the POST's request, socket and greenlet were held until
  the process ended, for anyone, before any login. Here it is answered 413 from its
  ``Content-Length`` alone (its body is never read) and the session closed without
  waiting.
- A request for a session that has just closed: python-engineio answered it 500 (a
  ``KeyError`` and its traceback in the log); here it is a 400, as for a session it
  never knew.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import socketio

from app.realtime.packets import close


class PollingGuard:
    """WSGI middleware in front of Flask-SocketIO's (``app.wsgi_app``), on its default
    path."""

    path = "/socket.io/"

    def __init__(self, wsgi_app: Callable, server: socketio.Server) -> None:
        self.wsgi_app = wsgi_app
        self.server = server

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith(self.path):
            return self.wsgi_app(environ, start_response)
        sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [""])[0]
        socket = self.server.eio.sockets.get(sid) if sid else None
        if socket is not None and socket.closed:
            return answer(start_response, "400 BAD REQUEST", "Session is disconnected")
        if environ.get("REQUEST_METHOD") == "POST" and self._too_large(environ):
            if socket is not None:
                close(self.server, sid, "a long-polling POST over the message size limit")
            return answer(start_response, "413 Request Entity Too Large",
                          "message too large: see SOCKETIO_MAX_HTTP_BUFFER_SIZE")
        return self.wsgi_app(environ, start_response)

    def _too_large(self, environ: dict[str, Any]) -> bool:
        try:
            return int(environ.get("CONTENT_LENGTH") or 0) > self.server.eio.max_http_buffer_size
        except ValueError:
            return False


def answer(start_response: Callable, status: str, message: str) -> list[bytes]:
    """Engine.IO's way of answering an error: its message as a JSON string."""
    start_response(status, [("Content-Type", "text/plain"), ("Connection", "close")])
    return [socketio.packet.Packet.json.dumps(message).encode()]
