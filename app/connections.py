"""The connections of one server process: caps per client address and in total, and the
shutdown that tells every client to go.

A connection is an Engine.IO session (polling or WebSocket) or a plain WebSocket
(``/ws/chat``). The server's handler (``app.websocket``) asks ``admit`` before running a
request that would open one; past a cap the request is answered 429 (this address has
too many) or 503 (the process is full) with ``{"error": reason}``, before any upgrade.
An admitted Engine.IO handshake hands its slot to the session it opens, freed when the
session ends; any other request frees it when it ends (a plain WebSocket's request lasts
as long as the socket). Only servers using that handler (``python manage.py run``,
gunicorn with ``app.worker.Worker``) apply the caps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger("app.connections")

SLOT = "livecrud.connection_slot"  # environ key of an admitted request's Slot


@dataclass
class Slot:
    """One counted connection. Flask-SocketIO hands Engine.IO a copy of the environ: the
    request and the session share this object, not the dict."""

    address: str
    session: str | None = None  # the Engine.IO session that took it over
    freed: bool = False


class ConnectionRegistry:
    """Counts the connections of each client address; knows the open WebSockets."""

    REFUSAL_LOG_EVERY = 10.0  # seconds: a stampede of refusals is one log line, not 4,000

    def __init__(self, per_address: int, total: int, trusted_proxies: list[str],
                 max_message_size: int, engineio_path: str = "socket.io",
                 compression: bool = True) -> None:
        self.per_address = per_address
        self.total = total
        self.trusted_proxies = set(trusted_proxies)
        self.max_message_size = max_message_size
        self.compression = compression  # WebSockets may negotiate permessage-deflate
        self.engineio_path = "/" + engineio_path.strip("/") + "/"
        self.counts: Counter[str] = Counter()
        self.open = 0
        self.sessions: dict[str, Slot] = {}  # Engine.IO sid -> its slot
        self.websockets: set[Any] = set()  # open WebSockets of the process (both kinds)
        self.handlers: set[Any] = set()  # the server's handlers: one per TCP connection
        self.shutting_down = False
        self.eio: Any = None
        self._lock = threading.Lock()
        self._refused = 0
        self._refusal_logged = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ConnectionRegistry:
        return cls(config["SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS"],
                   config["SOCKETIO_MAX_CONNECTIONS"], config["SOCKETIO_TRUSTED_PROXIES"],
                   config["SOCKETIO_MAX_HTTP_BUFFER_SIZE"],
                   compression=config["WEBSOCKET_COMPRESSION"])

    @staticmethod
    def of(app: Any) -> ConnectionRegistry | None:
        """The registry of a Flask app (None for any other WSGI application)."""
        extensions = getattr(app, "extensions", None)
        return extensions.get("connections") if extensions else None

    def _trusts(self, address: str) -> bool:
        return "*" in self.trusted_proxies or address in self.trusted_proxies

    def address(self, environ: Mapping[str, Any]) -> str:
        """The client's address: REMOTE_ADDR, unless that is a trusted proxy; then the
        last address of X-Forwarded-For that is not one. A connection without an address
        came through a Unix socket, which only a proxy on this host reaches (gunicorn
        trusts those too)."""
        remote = environ.get("REMOTE_ADDR", "")
        if remote and not self._trusts(remote):
            return remote
        hops = [h.strip() for h in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        for hop in reversed(hops):
            if not self._trusts(hop):
                return hop
        return hops[0] if hops else remote

    def opens_connection(self, environ: Mapping[str, Any]) -> bool:
        """An Engine.IO handshake (no ``sid`` yet), or a WebSocket upgrade elsewhere."""
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.engineio_path) or path == self.engineio_path[:-1]:
            return "sid" not in parse_qs(environ.get("QUERY_STRING", ""))
        return environ.get("HTTP_UPGRADE", "").lower() == "websocket"

    def admit(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """None when the request may go on (a slot is taken for it if it opens a
        connection), else the HTTP status and reason of its refusal."""
        if not self.opens_connection(environ):
            return None
        address = self.address(environ)
        with self._lock:
            if self.shutting_down:
                refusal = ("503 Service Unavailable", "server shutting down")
            elif self.open >= self.total:
                refusal = ("503 Service Unavailable",
                           f"server full: {self.total} connections open")
            elif self.counts[address] >= self.per_address:
                refusal = ("429 Too Many Requests",
                           f"too many connections from your address "
                           f"(at most {self.per_address})")
            else:
                self.counts[address] += 1
                self.open += 1
                environ[SLOT] = Slot(address)
                return None
        self._log_refusal(address, refusal[1])
        return refusal

    def release(self, environ: dict[str, Any]) -> None:
        """Free the request's slot, unless an Engine.IO session took it over."""
        slot = environ.pop(SLOT, None)
        if slot is not None and slot.session is None:
            self._free(slot)

    def _free(self, slot: Slot) -> None:
        with self._lock:
            if slot.freed:
                return
            slot.freed = True
            self.open -= 1
            self.counts[slot.address] -= 1
            if self.counts[slot.address] <= 0:
                del self.counts[slot.address]

    def _log_refusal(self, address: str, reason: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= self.REFUSAL_LOG_EVERY:
            log.warning("refused %d connection(s); latest from %s: %s",
                        self._refused, address, reason)
            self._refused = 0
            self._refusal_logged = now

    def watch(self, eio: Any) -> None:
        """Hand each admitted handshake's slot to the Engine.IO session it opens, and free
        it when the session ends (client gone, ping timeout, server close)."""
        self.eio = eio
        connect, disconnect = eio.handlers["connect"], eio.handlers["disconnect"]

        def on_connect(sid: str, environ: dict[str, Any]) -> Any:
            accepted = connect(sid, environ)
            slot = environ.get(SLOT)
            if slot is not None and slot.session is None and accepted in (None, True):
                slot.session = sid
                self.sessions[sid] = slot
            return accepted

        def on_disconnect(sid: str, reason: Any = None) -> Any:
            try:
                return disconnect(sid, reason)
            finally:
                if (slot := self.sessions.pop(sid, None)) is not None:
                    self._free(slot)

        eio.on("connect", on_connect)
        eio.on("disconnect", on_disconnect)

    def shutdown(self, grace: float = 2.0) -> None:
        """Tell every client to go: an Engine.IO close to each Socket.IO session and a
        1001 close frame to each plain WebSocket at once; end keep-alive connections as
        they fall idle; after ``grace`` seconds, close whatever is left. New connections
        are refused meanwhile. Returns when no connection is left, or after ``grace``."""
        self.shutting_down = True
        if self.eio is not None:
            for number, sock in enumerate(list(self.eio.sockets.values())):
                sock.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
                if number % 100 == 99:
                    time.sleep(0)  # let the writers send what is queued
        for ws in list(self.websockets):
            if not ws.closed and not (ws.path or "").startswith(self.engineio_path):
                ws.close(None, "server shutting down")
        deadline = time.monotonic() + grace
        while self.handlers and time.monotonic() < deadline:
            for handler in list(self.handlers):
                handler.close_if_idle()
            time.sleep(0.05)
        for ws in list(self.websockets):
            ws.close(None, "server shutting down")
