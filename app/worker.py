"""gunicorn's gevent-websocket worker with ``app.websocket``'s handler and the contract's
SIGTERM shutdown (``-k app.worker.Worker``, as deploy/gunicorn.conf.py names it)."""

from __future__ import annotations

from typing import Any

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.workers.ggevent import PyWSGIServer

from app.connections import ConnectionRegistry
from app.websocket import WebSocketHandler


class Worker(GeventWebSocketWorker):
    """On SIGTERM: stop accepting at once, tell every client to go; gunicorn's own loop
    then waits (``graceful_timeout``) for the handlers to end."""

    wsgi_handler = WebSocketHandler

    def init_process(self) -> None:
        self.servers: list[PyWSGIServer] = []
        super().init_process()  # ends by running the worker

    def server_class(self, *args: Any, **kwargs: Any) -> PyWSGIServer:
        """gunicorn makes its servers through this: keep them, to close them on SIGTERM."""
        server = PyWSGIServer(*args, **kwargs)
        self.servers.append(server)
        return server

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        gevent.spawn(self.shutdown)

    def shutdown(self) -> None:
        """Stop accepting, then tell every client to go (``ConnectionRegistry.shutdown``)."""
        for server in self.servers:
            server.close()
        if (registry := ConnectionRegistry.of(self.wsgi)) is not None:
            registry.shutdown()
