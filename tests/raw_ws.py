"""A WebSocket client on a raw socket, for the hostile-input tests: it can announce a frame
and send as little of it as it likes, stream a huge one, or go silent."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib


class RawWebSocket:
    """One WebSocket connection, driven byte by byte."""

    def __init__(self, port: int, path: str, timeout: float = 10,
                 extra_headers: str = "", receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:  # before connecting: the window it advertises stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n".encode())
        self.buffer = b""
        self.compressed = False  # the last frame received had RSV1 set
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.response = head.decode(errors="replace")

    @classmethod
    def over(cls, sock: socket.socket) -> RawWebSocket:
        """A reader of server frames on a socket that is already a WebSocket (no
        handshake): ``recv_frame`` and the rest."""
        ws = cls.__new__(cls)
        ws.sock, ws.buffer, ws.compressed = sock, b"", False
        return ws

    @staticmethod
    def inflate(payload: bytes) -> bytes:
        """A compressed message's payload (RFC 7692: the sync flush tail put back)."""
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + b"\0\0\xff\xff")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"EOF before {marker!r}: {self.buffer[:200]!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def body(self) -> bytes:
        """The rest of a refused handshake's response (read until the server closes)."""
        data = self.buffer
        while chunk := self.sock.recv(65536):
            data += chunk
        return data

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    @staticmethod
    def header(length: int, opcode: int = 1, fin: bool = True, mask: bytes = b"\0\0\0\0",
               compressed: bool = False) -> bytes:
        """A masked client frame's header announcing ``length`` payload bytes (with RSV1,
        permessage-deflate's bit, if ``compressed``)."""
        first = (0x80 if fin else 0) | (0x40 if compressed else 0) | opcode
        if length < 126:
            head = struct.pack("!BB", first, 0x80 | length)
        elif length <= 0xFFFF:
            head = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, length)
        return head + mask

    @staticmethod
    def frame(payload: bytes, opcode: int = 1, fin: bool = True,
              compressed: bool = False) -> bytes:
        """A whole masked frame (the mask is random)."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return RawWebSocket.header(len(payload), opcode, fin, mask, compressed) + masked

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.frame(text.encode()))

    def recv_frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload); ``compressed`` tells its RSV1 bit."""
        first, second = self._read(2)
        self.compressed = bool(first & 0x40)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        return first & 0x0F, self._read(length)

    def recv_text(self) -> str:
        """The next text frame's text (pings and pongs skipped)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 1:
                return payload.decode()
            if opcode == 8:
                raise ConnectionError(f"closed: {payload!r}")

    def wait_close(self, timeout: float) -> tuple[int, str]:
        """Read until the server's close frame; its code and reason."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            opcode, payload = self.recv_frame()
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode(errors="replace")
        raise TimeoutError("no close frame")

    def wait_eof(self, timeout: float) -> float:
        """Read (and drop) everything until the server ends the connection; seconds it took."""
        start = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return time.monotonic() - start

    def close(self) -> None:
        self.sock.close()
