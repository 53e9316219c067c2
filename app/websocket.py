"""gevent-websocket, bounded: the handler both servers use (``python manage.py run`` and
gunicorn's worker, ``app.worker``).

gevent-websocket reads a frame's whole announced length, then unmasks it byte by byte
in Python, before Engine.IO or a view sees its size: one 20 MB frame froze every client
of the process. Here a message bigger than ``SOCKETIO_MAX_HTTP_BUFFER_SIZE`` is refused
from its frame header (close 1009, nothing of it read), unmasking is one big-integer XOR,
a close sends its status code, and closing also shuts the TCP connection down, so that a
reader blocked on a silent client returns and its socket is released. Messages are
compressed where the client offers it (``app.deflate``). The handler also applies the
connection caps of ``app.connections`` before a request opens a connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.handler import WebSocketHandler as BaseHandler
from geventwebsocket.websocket import Header, Stream, WebSocket

from app import deflate
from app.connections import ConnectionRegistry

MESSAGE_TOO_BIG = 1009
COMPRESSED = Header.RSV0_MASK  # the frame bit RFC 6455 calls RSV1: a compressed message
GOING_AWAY = 1001
# Engine.IO's own default, for an application without a ConnectionRegistry.
DEFAULT_MAX_MESSAGE = 1_000_000


class MessageTooBig(WebSocketError):
    """A frame header announced more than the message size limit."""


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask``, as one integer operation."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little")


def data_frame(message: str | bytes | bytearray, opcode: int, compress: bool) -> bytes:
    """A whole unmasked text or binary frame (a server's) for ``message``."""
    if compress:
        payload, flags = deflate.deflate(message), COMPRESSED
    else:
        payload, flags = message.encode() if isinstance(message, str) else bytes(message), 0
    return Header.encode_header(True, opcode, b"", len(payload), flags) + payload


class IgnoresClose:
    """gevent-websocket's ``current_app`` fallback, made once."""

    def on_close(self, *args: Any) -> None:
        pass


IGNORES_CLOSE = IgnoresClose()


class LimitedWebSocket(WebSocket):
    """A gevent-websocket WebSocket whose messages are at most ``max_size`` bytes (once
    inflated, with ``compress``), and whose frames are written one at a time: a writer
    blocked on a client that does not read makes the reader's pong or close reply wait,
    not fail; ``close`` does not wait for it and cuts the connection off instead."""

    __slots__ = ("compress", "max_size", "sending")

    def __init__(self, environ: dict, stream: Stream, handler: WebSocketHandler,
                 max_size: int, compress: bool = False) -> None:
        super().__init__(environ, stream, handler)
        self.max_size = max_size
        self.compress = compress  # permessage-deflate was negotiated
        self.sending = BoundedSemaphore()

    def send_frame(self, message: Any, opcode: int) -> None:
        if opcode not in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            with self.sending:
                super().send_frame(message, opcode)
            return
        frame = data_frame(message, opcode, self.compresses(message))
        with self.sending:
            if self.closed:
                raise WebSocketError("Connection is already closed")
            try:
                self.raw_write(frame)
            except OSError as exc:
                raise WebSocketError("Socket is dead") from exc

    @property
    def current_app(self) -> Any:
        """What gevent-websocket tells of a close: the server's application has no
        ``current_app`` here, and gevent-websocket's fallback defines a new class at each
        call (two per connection), each a reference cycle for the garbage collector."""
        return IGNORES_CLOSE

    def compresses(self, message: Any) -> bool:
        return self.compress and len(message) >= deflate.MIN_SIZE

    def send_now(self, message: str, frames: dict[bool, bytes]) -> bool:
        """Write ``message`` as a text frame now if no other frame is being written and
        the socket takes some of it without waiting (the rest is written in the
        background, before any other frame); False when nothing was written.

        ``frames`` holds the frames already encoded for the same message, plain and
        compressed, so a message fanned out to many sockets is encoded once.
        """
        # A released lock is handed to its waiter (Engine.IO's writer with a packet in
        # hand, a pong) only in a later loop turn: while one waits, the frame queues.
        if self.closed or self.sending.linkcount() or not self.sending.acquire(blocking=False):
            return False
        compress = self.compresses(message)
        if (frame := frames.get(compress)) is None:
            frame = frames[compress] = data_frame(message, self.OPCODE_TEXT, compress)
        try:
            sent = self.handler.socket.send(frame, 0, 0.0)  # gevent: 0.0 never waits
        except (OSError, AttributeError):  # EAGAIN: the buffer is full; or it is gone
            sent = 0
        if 0 < sent < len(frame):
            gevent.spawn(self._send_rest, memoryview(frame)[sent:])  # keeps the lock
            return True
        self.sending.release()
        return sent > 0

    def _send_rest(self, rest: memoryview) -> None:
        try:
            if self.closed:  # closed meanwhile: its stream is gone
                return
            self.raw_write(rest)
        except OSError:
            self.abort()  # a frame cut short: the connection cannot go on
        finally:
            self.sending.release()

    def read_frame(self, budget: int | None = None) -> tuple[Header, bytes]:
        """One frame; a data frame longer than ``budget`` raises MessageTooBig before a
        byte of its payload is read."""
        stream = self.stream
        if stream is None:
            raise WebSocketError("Connection closed")
        header = Header.decode_header(stream)
        if header.flags and not (header.flags == COMPRESSED and self.compress and header.opcode
                                 in (self.OPCODE_TEXT, self.OPCODE_BINARY)):
            raise ProtocolError("reserved bits set")
        if header.opcode < self.OPCODE_CLOSE and header.length > (
                self.max_size if budget is None else budget):
            raise MessageTooBig(f"frame of {header.length} bytes")
        payload = stream.read(header.length) if header.length else b""
        if len(payload) != header.length:
            raise WebSocketError("Unexpected EOF reading frame payload")
        if header.mask and payload:
            payload = unmask(payload, header.mask)
        return header, payload

    def read_message(self) -> str | bytearray | None:
        """The next text or binary message (fragments joined, their total bounded, then
        inflated if it was compressed); None after a close frame."""
        opcode = None
        compressed = False
        message = bytearray()
        while True:
            header, payload = self.read_frame(self.max_size - len(message))
            code = header.opcode
            if code in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode:
                    raise ProtocolError("new message inside a fragmented one")
                opcode = code
                compressed = bool(header.flags)
            elif code == self.OPCODE_CONTINUATION:
                if not opcode:
                    raise ProtocolError("continuation frame without a message")
            elif code == self.OPCODE_PING:
                self.handle_ping(header, payload)
                continue
            elif code == self.OPCODE_PONG:
                continue
            elif code == self.OPCODE_CLOSE:
                self.handle_close(header, payload)
                return None
            else:
                raise ProtocolError(f"unexpected opcode {code}")
            message += payload
            if header.fin:
                break
        if compressed:
            try:
                message = bytearray(deflate.inflate(message, self.max_size))
            except deflate.TooBig as exc:
                raise MessageTooBig(str(exc)) from exc
            except deflate.InflateError as exc:
                raise ProtocolError(f"bad compressed message: {exc}") from exc
        if opcode == self.OPCODE_TEXT:
            return message.decode("utf-8")  # UnicodeDecodeError: closed with 1007
        return message

    def receive(self) -> str | bytearray | None:
        """The next message, or None once the connection is closed (by either side)."""
        if self.closed:
            raise WebSocketError("Connection is already closed")
        try:
            message = self.read_message()
            gevent.sleep(0)  # a client's burst of frames must not starve the others
            return message
        except MessageTooBig:
            self.close(MESSAGE_TOO_BIG, "message too big")
        except UnicodeError:
            self.close(1007, "invalid UTF-8")
        except ProtocolError:
            self.close(1002, "protocol error")
        except OSError:
            self.close()
        return None

    def close(self, code: int | None = None, message: bytes | str = b"") -> None:
        """Send a close frame with ``code`` (1001 while the server shuts down, else 1000)
        and shut the TCP connection down: a greenlet blocked reading it returns at once."""
        if self.closed:
            return
        if code is None:
            registry = ConnectionRegistry.of(self.handler.application)
            code = GOING_AWAY if registry and registry.shutting_down else 1000
        reason = message.encode() if isinstance(message, str) else bytes(message or b"")
        if self.sending.acquire(blocking=False):  # else a send is stuck: no frame gets by
            try:
                super().send_frame(struct.pack("!H", code) + reason[:123], self.OPCODE_CLOSE)
            except OSError:
                pass  # the peer is gone: nothing to tell it
            finally:
                self.sending.release()
        self.abort()
        self.stream = self.raw_write = self.raw_read = None

    def abort(self) -> None:
        """Shut the TCP connection down without a close frame (the peer does not read:
        one would not get through); a greenlet blocked sending or reading returns."""
        self.closed = True
        sock = getattr(self.handler, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def settimeout(self, seconds: float) -> None:
        """Engine.IO sets ping interval + ping timeout here: a client silent for that
        long has its read time out, and its connection closed."""
        sock = getattr(self.handler, "socket", None)
        if sock is not None:
            sock.settimeout(seconds)


class WebSocketHandler(BaseHandler):
    """gevent-websocket's handler with LimitedWebSocket and the connection caps."""

    in_request = False

    def handle(self) -> None:
        """Serve the TCP connection, known to the registry meanwhile (shutdown).

        With Nagle's algorithm on, a response written in two sends (pywsgi writes the
        headers, then the body) waits for the client's delayed ACK of the first: 40 ms
        added to every request of a keep-alive connection. gunicorn's listener sets
        TCP_NODELAY; ``manage.py run``'s does not, so each connection sets it here."""
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # already reset by the client
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        registry = ConnectionRegistry.of(self.server.application)
        if registry is None:
            return super().handle()
        registry.handlers.add(self)
        try:
            return super().handle()
        finally:
            registry.handlers.discard(self)

    def run_application(self) -> Any:
        registry = ConnectionRegistry.of(self.application)
        if registry is None:
            return super().run_application()
        refusal = registry.admit(self.environ)
        if refusal is not None:
            return self.refuse(*refusal)
        self.in_request = True
        try:
            return super().run_application()
        finally:
            self.in_request = False
            registry.release(self.environ)
            if registry.shutting_down:
                self.close_connection = True

    def close_if_idle(self) -> None:
        """End the connection if it waits for its next request (keep-alive); shutdown."""
        if not self.in_request and (sock := getattr(self, "socket", None)) is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def upgrade_connection(self) -> Any:
        """gevent-websocket's upgrade, then its WebSocket swapped for a LimitedWebSocket,
        compressed if the client offers it and the application allows it."""
        result = super().upgrade_connection()
        plain = self.environ.get("wsgi.websocket")
        if plain is not None:
            # Never used: its __del__ (close) must not send a close frame, nor reach
            # gevent-websocket's ``current_app`` fallback (see LimitedWebSocket's).
            plain.closed = True
            plain.handler = None
            registry = ConnectionRegistry.of(self.application)
            limit = registry.max_message_size if registry else DEFAULT_MAX_MESSAGE
            answer = None
            if registry is None or registry.compression:
                answer = deflate.negotiate(self.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS", ""))
            if answer:  # the 101 response's headers are written after this returns
                self.response_headers.append((b"Sec-WebSocket-Extensions", answer.encode()))
            self.websocket = LimitedWebSocket(self.environ, Stream(self), self, limit,
                                              compress=answer is not None)
            self.environ["wsgi.websocket"] = self.websocket
        return result

    def run_websocket(self) -> None:
        """Run the app on the open WebSocket, known to the registry meanwhile (shutdown)."""
        if not isinstance(self.client_address, tuple):
            # A Unix socket's peers all have the address "": gevent-websocket keys its
            # clients by address, and the second close would find the key gone.
            self.client_address = ("unix", id(self))
        registry = ConnectionRegistry.of(self.application)
        if registry is None:
            return super().run_websocket()
        ws = self.websocket
        registry.websockets.add(ws)
        try:
            return super().run_websocket()
        finally:
            registry.websockets.discard(ws)

    def refuse(self, status: str, reason: str) -> None:
        """Answer ``status`` with ``{"error": reason}`` instead of running the app."""
        body = json.dumps({"error": reason}).encode()
        self.close_connection = True
        self.start_response(status, [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", "5"),
        ])
        self.result = [body]
        self.process_result()
