"""The error answer of every namespace: ``{"error": reason}`` in the acknowledgement
when the client asked for one, else as one ``error`` event; never both. The connection
and the server go on."""

from __future__ import annotations

import socketio
from flask_socketio import emit
from socketio import packet

from app.realtime.acks import ack_requested


class ClientError(Exception):
    """A bad event: answered with ``{"error": reason}``, the connection stays up."""


def reject(reason: str, **extra: str) -> dict[str, str] | None:
    """The error answer from inside a handler."""
    answer = {"error": reason, **extra}
    if ack_requested():
        return answer
    emit("error", answer)
    return None


def answer_error(server: socketio.Server, eio_sid: str, namespace: str, ack_id: int | None,
                 reason: str) -> None:
    """The error answer from outside any handler (the packet guard, the rate limit)."""
    answer = {"error": reason}
    if ack_id is not None:
        server._send_packet(eio_sid, server.packet_class(packet.ACK, namespace=namespace,
                                                         id=ack_id, data=[answer]))
    else:
        server._send_packet(eio_sid, server.packet_class(packet.EVENT, namespace=namespace,
                                                         data=["error", answer]))
