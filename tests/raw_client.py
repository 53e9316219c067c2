"""A raw Socket.IO client over websocket-client: sends any text frame, however malformed,
and reads the server's frames as they come (the end-to-end tests of hostile input)."""

from __future__ import annotations

import json
import time
from typing import Any

import websocket


class RawSocket:
    """One Engine.IO WebSocket connection, with the Socket.IO namespace joined by hand."""

    def __init__(self, port: int, namespace: str, token: str) -> None:
        self.namespace = namespace
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=10)
        opening = self.ws.recv()
        assert opening.startswith("0{"), opening
        self.send(f"40{namespace},{json.dumps({'token': token})}")
        while not (connected := self.recv()).startswith(f"40{namespace},"):
            assert connected.startswith(f"42{namespace},"), connected  # said on connect
        self._next_id = 100

    def send(self, frame: str) -> None:
        self.ws.send(frame)

    def recv(self, timeout: float = 10) -> str:
        """The next Socket.IO frame (Engine.IO pings are answered on the way)."""
        self.ws.settimeout(timeout)
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
                continue
            return frame

    def closed(self, timeout: float = 5) -> bool:
        """Whether the server closes the connection within ``timeout`` (frames before the
        close are skipped)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.settimeout(max(deadline - time.monotonic(), 0.01))
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE or data in (b"1", b""):
                    return True
        except websocket.WebSocketTimeoutException:
            return False
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        return False

    def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        """Emit ``event`` with an ack id; the ack's first argument."""
        self._next_id += 1
        ack_id = self._next_id
        self.send(f"42{self.namespace},{ack_id}{json.dumps([event, *args])}")
        return self.ack(ack_id, timeout)

    def ack(self, ack_id: int, timeout: float = 10) -> Any:
        """Wait for the acknowledgement ``ack_id``, skipping other frames."""
        prefix = f"43{self.namespace},{ack_id}["
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(deadline - time.monotonic(), 0.01))
            if frame.startswith(prefix):
                return json.loads(frame[len(prefix) - 1:])[0]

    def event(self, name: str, timeout: float = 10) -> Any:
        """Wait for the event ``name`` on the namespace, skipping other frames."""
        prefix = f"42{self.namespace},"
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(deadline - time.monotonic(), 0.01))
            if frame.startswith(prefix):
                payload = json.loads(frame[len(prefix):])
                if payload[0] == name:
                    return payload[1] if len(payload) > 1 else None

    def close(self) -> None:
        self.ws.close()
