"""Whether the client asked for an acknowledgement of the event being handled.

The contract answers a bad event with ``{"error": ...}`` in the acknowledgement, or
with an ``error`` event when the client asked for none. Flask-SocketIO does not tell
handlers which it is, so the server's event dispatch records it in a local that is
per greenlet (gevent) or per thread (threading): each event runs in its own.
"""

from __future__ import annotations

import threading
from typing import Any

import socketio

_local = threading.local()


def track_acks(server: socketio.Server) -> None:
    """Wrap ``server``'s event dispatch to record whether an ack id came with the event."""
    dispatch = server._handle_event_internal

    def handle_event(srv: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any):
        _local.wants_ack = id is not None
        return dispatch(srv, sid, eio_sid, data, namespace, id)

    server._handle_event_internal = handle_event


def ack_requested() -> bool:
    """True when the event being handled came with an acknowledgement id."""
    return getattr(_local, "wants_ack", True)
