"""Room events written straight to the members' WebSockets.

python-socketio sends a room's event through each member's Engine.IO queue, and that
member's writer greenlet writes it: for a change frame going to thousands of subscribers,
the queue, the switches to and from each writer and their timeouts cost several times
the write itself. ``emit`` encodes (and compresses) the frame once and writes it at once
to every WebSocket that is idle and takes it whole without waiting; any other member
(long-polling, upgrading, its writer busy, its queue not empty, its socket buffer full)
gets it through its queue as before, so each client's events stay in order.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from engineio.async_drivers import gevent as eio_gevent
from gevent.ssl import SSLSocket
from socketio import packet

from app.websocket import LimitedWebSocket


class LinkedWebSocketWSGI(eio_gevent.WebSocketWSGI):
    """Engine.IO's gevent-websocket wrapper, which also records the WebSocket on the
    Engine.IO socket it serves (its handler is that socket's bound method)."""

    def __call__(self, environ: dict, start_response: Any) -> Any:
        ws = environ.get("wsgi.websocket")
        owner = getattr(self.app, "__self__", None)
        # Not over TLS in the process: an SSL socket's send cannot be tried without
        # waiting. Not a second upgrade of a socket that has one going.
        linked = (isinstance(ws, LimitedWebSocket) and owner is not None
                  and not isinstance(getattr(ws.handler, "socket", None), SSLSocket)
                  and getattr(owner, "websocket", None) is None)
        if linked:
            owner.websocket = ws
        try:
            return super().__call__(environ, start_response)  # runs the whole connection
        finally:
            if linked:
                owner.websocket = None


def link_websockets(server: socketio.Server) -> None:
    """Let each Engine.IO socket of ``server`` know its WebSocket (under gevent with
    gevent-websocket; other servers keep python-socketio's way)."""
    eio = server.eio
    if eio.async_mode == "gevent" and eio_gevent.SimpleWebSocketWSGI is None:
        eio._async = {**eio._async, "websocket": LinkedWebSocketWSGI}


def emit(server: socketio.Server, event: str, data: Any, room: str, namespace: str) -> None:
    """``server.emit(event, data, to=room, namespace=namespace, ignore_queue=True)``: to
    this process's members of ``room``, written at once where the socket allows it."""
    encoded = server.packet_class(packet.EVENT, namespace=namespace,
                                  data=[event, data]).encode()
    if isinstance(encoded, list):  # binary attachments: several packets, the usual way
        server.emit(event, data, to=room, namespace=namespace, ignore_queue=True)
        return
    eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
    text = eio_pkt.encode()
    frames: dict[bool, bytes] = {}  # this event's frame, plain and compressed
    sockets = server.eio.sockets
    for _sid, eio_sid in server.manager.get_participants(namespace, room):
        sock = sockets.get(eio_sid)
        ws = getattr(sock, "websocket", None)
        if (ws is not None and sock.upgraded and not sock.upgrading and not sock.closed
                and sock.queue.empty() and ws.send_now(text, frames)):
            continue
        server._send_eio_packet(eio_sid, eio_pkt)  # queued (the test client's way too)
