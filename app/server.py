"""``python manage.py run``: the gevent WSGI server with ``app.websocket``'s handler, and
the contract's SIGTERM shutdown (gunicorn's worker, ``app.worker``, does the same)."""

from __future__ import annotations

import logging
import signal

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from app.connections import ConnectionRegistry
from app.websocket import WebSocketHandler

log = logging.getLogger("app.server")

# Seconds the handlers get to finish once every client was told to go; then they are
# killed. Stop accepting (at once) + tell (grace) + this stays well within 10 s.
STOP_TIMEOUT = 3.0


def serve(app: Flask, host: str, port: int) -> None:
    """Serve until SIGTERM, then shut down (see ``shutdown``); returns after it."""
    server = WSGIServer((host, port), app, handler_class=WebSocketHandler, spawn=Pool(),
                        log=None)
    stopping = Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    server.start()
    stopping.wait()
    shutdown(app, [server])


def shutdown(app: Flask, servers: list[WSGIServer]) -> None:
    """Stop accepting, tell every client to go (an Engine.IO close, a 1001 close frame),
    then stop the servers: their handlers get STOP_TIMEOUT seconds to end."""
    log.info("SIGTERM: closing the listener and the clients' connections")
    for server in servers:
        server.close()
    if (registry := ConnectionRegistry.of(app)) is not None:
        registry.shutdown()
    for server in servers:
        server.stop(timeout=STOP_TIMEOUT)
