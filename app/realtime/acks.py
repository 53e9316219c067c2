"""Acknowledgement-aware event dispatch.

The contract answers a bad event with ``{"error": ...}`` in the acknowledgement, or
with an ``error`` event when the client asked for none; and a subscriber may join the
broadcast room only once its acknowledgement is on the wire, so that no broadcast can
overtake it (a real risk with the threads of ``flask run``). Flask-SocketIO tells
handlers neither, so the server's event dispatch is wrapped: it records whether an ack
id came with the event, and runs callbacks registered with ``after_ack`` once the ack
has been queued. The state is per greenlet (gevent) or per thread: each event runs in
its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import socketio

_local = threading.local()


def track_acks(server: socketio.Server) -> None:
    """Wrap ``server``'s event dispatch (handler, then ack) with the bookkeeping above."""
    dispatch = server._handle_event_internal

    def handle_event(srv: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any):
        _local.wants_ack = id is not None
        _local.after_ack = []
        try:
            return dispatch(srv, sid, eio_sid, data, namespace, id)
        finally:
            callbacks, _local.after_ack = _local.after_ack, []
            for callback in callbacks:
                callback()

    server._handle_event_internal = handle_event


def ack_requested() -> bool:
    """True when the event being handled came with an acknowledgement id."""
    return getattr(_local, "wants_ack", True)


def after_ack(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the current event's acknowledgement has been queued."""
    _local.after_ack.append(callback)
