"""The guard of incoming Socket.IO packets: what python-socketio would choke on is
answered or closes its own connection, with one log line, never a traceback.

python-socketio decodes every Engine.IO message in its ``message`` handler and lets any
error escape to Engine.IO, which logs a traceback and gives the client no answer; a
packet announcing binary attachments makes it keep every later message of that
connection as an attachment, without limit. The guard replaces that handler (Engine.IO's
``on("message")``) and dispatches to the same server methods:

- an event whose payload cannot be decoded (bad JSON, nested deeper than
  ``safe_json.MAX_DEPTH``) or is no ``[name, ...args]`` list with a string name (not a
  reserved one) is answered ``{"error": ...}``: in the ack when the packet has an ack id,
  else as an ``error`` event; such answers count against the connection's event rate
  limit like any event;
- a binary packet (an event or ack with attachments) of a connected namespace is
  dispatched once its attachments have arrived, as python-socketio would, within bounds:
  at most ``MAX_ATTACHMENTS`` of them, ``max_http_buffer_size`` bytes in all, nothing
  else in between, and each placed exactly once (a placeholder repeated a thousand
  times would make a thousand copies); handlers then refuse the bytes they do not take
  like any wrong type;
- packets breaking those bounds, binary messages that no packet announced, packets of
  unknown or server-only types, acknowledgements without a list, and undecodable packets
  outside a joined namespace close the connection.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet

from app.connections import ConnectionRegistry
from app.realtime import safe_json
from app.realtime.errors import answer_error
from app.realtime.ratelimit import RateLimiter

log = logging.getLogger("app.realtime")

RESERVED_EVENTS = frozenset(("connect", "disconnect", "connect_error", "disconnecting"))
MAX_EVENT_NAME = 64
MAX_ATTACHMENTS = 10


class GuardedPacket(packet.Packet):
    """A Socket.IO packet that records a decoding error instead of raising it, keeping
    the namespace and ack id read before the error (so the error can be answered)."""

    json = safe_json
    error: str | None = None
    attachment_bytes = 0

    def decode(self, encoded_packet: str) -> int:
        try:
            return super().decode(encoded_packet)
        except ValueError as exc:
            self.error = str(exc)
            return 0


def guard_packets(server: socketio.Server, limiter: RateLimiter) -> None:
    """Route ``server``'s Engine.IO messages through the guard (see the module docstring)."""

    def on_message(eio_sid: str, data: Any) -> None:
        handle_message(server, limiter, eio_sid, data)

    server.eio.on("message", on_message)
    # python-socketio forgets a connection's pending binary packet only with a namespace
    # still connected: forget it with the connection, whatever it was.
    disconnected = server.eio.handlers["disconnect"]

    def on_disconnect(eio_sid: str, *args: Any) -> Any:
        try:
            return disconnected(eio_sid, *args)
        finally:
            server._binary_packet.pop(eio_sid, None)

    server.eio.on("disconnect", on_disconnect)


def handle_message(server: socketio.Server, limiter: RateLimiter, eio_sid: str,
                   data: Any) -> None:
    """Dispatch one Engine.IO message as ``Server._handle_eio_message`` does, or refuse it."""
    if eio_sid not in server.environ:  # the connection closed meanwhile
        return None
    # python-socketio's own table of the binary packets awaiting their attachments.
    awaiting = server._binary_packet
    if not isinstance(data, str):
        if eio_sid not in awaiting:
            return close(server, eio_sid, "a binary message that no packet announced")
        return attach(server, limiter, eio_sid, data)
    if awaiting.pop(eio_sid, None) is not None:
        return close(server, eio_sid, "a text message among a packet's attachments")
    pkt = GuardedPacket(encoded_packet=data)
    kind = pkt.packet_type
    if pkt.error is None and kind == packet.CONNECT:
        server._handle_connect(eio_sid, pkt.namespace, pkt.data)
    elif pkt.error is None and kind == packet.DISCONNECT:
        server._handle_disconnect(eio_sid, pkt.namespace, server.reason.CLIENT_DISCONNECT)
    elif kind in (packet.EVENT, packet.ACK):
        dispatch(server, limiter, eio_sid, pkt)
    elif pkt.error is None and kind in (packet.BINARY_EVENT, packet.BINARY_ACK):
        if not 0 < pkt.attachment_count <= MAX_ATTACHMENTS:
            return close(server, eio_sid, f"{pkt.attachment_count} binary attachments "
                                          f"announced (at most {MAX_ATTACHMENTS})")
        if sorted(placeholders(pkt.data)) != list(range(pkt.attachment_count)):
            return close(server, eio_sid, "binary placeholders do not name each "
                                          "attachment once")
        sid = server.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/")
        if sid is None or not server.manager.is_connected(sid, pkt.namespace or "/"):
            return close(server, eio_sid, f"binary packet on namespace {pkt.namespace}, "
                                          "not connected")
        awaiting[eio_sid] = pkt
    else:
        close(server, eio_sid, pkt.error or f"unexpected packet type {kind!r}")
    return None


def attach(server: socketio.Server, limiter: RateLimiter, eio_sid: str, data: bytes) -> None:
    """One attachment of the binary packet ``eio_sid`` announced; the last one dispatches
    the packet."""
    pkt: GuardedPacket = server._binary_packet[eio_sid]
    pkt.attachment_bytes += len(data)
    if pkt.attachment_bytes > server.eio.max_http_buffer_size:
        del server._binary_packet[eio_sid]
        return close(server, eio_sid, "binary attachments over the message size limit")
    if pkt.add_attachment(data):  # the placeholders were checked at the announcement
        del server._binary_packet[eio_sid]
        dispatch(server, limiter, eio_sid, pkt)
    return None


def dispatch(server: socketio.Server, limiter: RateLimiter, eio_sid: str,
             pkt: GuardedPacket) -> None:
    """An event or acknowledgement, binary ones with their attachments in place: to its
    handler, else an event is answered an error and an acknowledgement closes."""
    if pkt.packet_type in (packet.EVENT, packet.BINARY_EVENT):
        problem = pkt.error or event_problem(pkt.data)
        if problem is None:
            server._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:
            refuse_event(server, limiter, eio_sid, pkt, problem)
    elif pkt.error is None and isinstance(pkt.data, list):
        server._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
    else:
        close(server, eio_sid, pkt.error or "an acknowledgement without a list")


def placeholders(data: Any) -> list[Any]:
    """The ``num`` of every binary placeholder in a decoded packet (at most
    ``safe_json.MAX_DEPTH`` deep), as python-socketio would substitute them; a ``num``
    that is no plain integer is listed as it is, and matches no attachment."""
    if isinstance(data, list):
        return [num for item in data for num in placeholders(item)]
    if isinstance(data, dict):
        if data.get("_placeholder") and "num" in data:
            num = data["num"]
            return [num if type(num) is int else repr(num)]
        return [num for value in data.values() for num in placeholders(value)]
    return []


def event_problem(data: Any) -> str | None:
    """Why an event's decoded payload cannot be dispatched, or None."""
    if not isinstance(data, list) or not data:
        return "an event must be a list: [name, ...arguments]"
    name = data[0]
    if not isinstance(name, str) or not name:
        return "the event name must be a non-empty string"
    if len(name) > MAX_EVENT_NAME:
        return f"event names are at most {MAX_EVENT_NAME} characters"
    if name in RESERVED_EVENTS:
        return f"{name!r} is a reserved event name"
    return None


def refuse_event(server: socketio.Server, limiter: RateLimiter, eio_sid: str,
                 pkt: GuardedPacket, reason: str) -> None:
    """Answer a malformed event on its namespace (or close a connection that has not
    joined it); past the rate limit the answer is the limit's, and nothing is logged."""
    sid = server.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/")
    if sid is None:
        return close(server, eio_sid, f"{reason} (namespace {pkt.namespace} not joined)")
    if not limiter.allow(f"{pkt.namespace} {sid}"):
        return answer_error(server, eio_sid, pkt.namespace, pkt.id, limiter.message("events"))
    log.warning("malformed Socket.IO event from %s on %s: %s", peer(server, eio_sid),
                pkt.namespace, reason)
    answer_error(server, eio_sid, pkt.namespace, pkt.id, f"malformed event: {reason}")
    return None


def close(server: socketio.Server, eio_sid: str, reason: str) -> None:
    """Close the Engine.IO connection (each joined namespace sees a disconnect).

    Without waiting for the CLOSE packet to go out: a polling client that never polls
    again must not hold the request that sent the packet (Engine.IO's service task
    drops the closed socket).
    """
    log.warning("closing Socket.IO connection of %s: %s", peer(server, eio_sid), reason)
    socket = server.eio.sockets.get(eio_sid)
    if socket is not None:
        socket.close(wait=False, reason=server.eio.reason.SERVER_DISCONNECT)


def peer(server: socketio.Server, eio_sid: str) -> str:
    """The client's address, for the log: as the connection caps count it (behind a
    trusted proxy or a Unix socket, from X-Forwarded-For)."""
    environ = server.environ.get(eio_sid) or {}
    registry = ConnectionRegistry.of(environ.get("flask.app"))
    address = registry.address(environ) if registry else environ.get("REMOTE_ADDR")
    return address or "unknown"
