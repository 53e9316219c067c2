"""What every Socket.IO namespace shares: the error answer, the rate limit, the
acknowledgement bookkeeping, the guard against malformed packets, a base class, the
room events written straight to WebSockets (``fanout``), and a URL rule for the
handshake that every event's request context is made from.

``init_realtime`` installs them on the app's Socket.IO server, once per ``init_app``.
"""

from __future__ import annotations

import socketio
from flask import Flask, abort


def init_realtime(app: Flask, server: socketio.Server) -> None:
    """Wrap ``server``'s packet and event dispatch for every namespace."""
    from app.realtime.acks import track_acks
    from app.realtime.fanout import link_websockets
    from app.realtime.packets import guard_packets
    from app.realtime.ratelimit import RateLimiter, limit_events

    limiter = RateLimiter(app.config["SOCKETIO_EVENT_RATE"], app.config["SOCKETIO_EVENT_BURST"])
    guard_packets(server, limiter)
    track_acks(server)
    limit_events(server, limiter)
    link_websockets(server)
    route_engineio_path(app)


def route_engineio_path(app: Flask) -> None:
    """Give Engine.IO's path (``/socket.io/``) a URL rule.

    Flask-SocketIO runs each event's handler in a request context made from its
    session's handshake request. No rule matched that path, so every event raised a
    NotFound and kept it on the request, and the frames of its traceback tied the context
    into reference cycles: about 100 objects an event left for the garbage collector,
    whose pauses reached half a second while 2000 clients connected and left.
    """
    path = app.extensions["connections"].engineio_path
    for websocket in (False, True):  # a polling handshake, a WebSocket one
        app.add_url_rule(path, endpoint="engineio", view_func=not_found, websocket=websocket,
                         strict_slashes=False, provide_automatic_options=False)


def not_found() -> None:
    """The rule's view, for form's sake: Engine.IO's middleware answers every request on
    its path before Flask sees it."""
    abort(404)
