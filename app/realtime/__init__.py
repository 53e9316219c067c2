"""What every Socket.IO namespace shares: the error answer, the rate limit, the
acknowledgement bookkeeping, the guard against malformed packets, a base class, and the
room events written straight to WebSockets (``fanout``).

``init_realtime`` installs them on the app's Socket.IO server, once per ``init_app``.
"""

from __future__ import annotations

import socketio
from flask import Flask


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
