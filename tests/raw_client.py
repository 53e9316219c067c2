"""A raw Socket.IO client over websocket-client: sends any text frame, however malformed,
and reads the server's frames as they come (the end-to-end tests of hostile input)."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import websocket

CLOSED = object()  # put on the queue when the server closes the connection


class RawSocket:
    """One Engine.IO WebSocket connection, with the Socket.IO namespace joined by hand.

    A reader thread answers Engine.IO pings at once (an idle client is never dropped
    for a missed pong, however long a test takes) and queues every other frame.
    """

    def __init__(self, port: int, namespace: str, token: str,
                 headers: list[str] | None = None) -> None:
        self.namespace = namespace
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=10,
            header=headers or [])
        self.ws.settimeout(None)
        self.frames: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        opening = self.recv()
        assert opening.startswith("0{"), opening
        self.send(f"40{namespace},{json.dumps({'token': token})}")
        while not (connected := self.recv()).startswith(f"40{namespace},"):
            assert connected.startswith(f"42{namespace},"), connected  # said on connect
        self._next_id = 100

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE or data == b"1":
                    break
                if data == b"2":
                    self.ws.send("3")
                elif opcode == websocket.ABNF.OPCODE_TEXT:
                    self.frames.put(data.decode())
        except (websocket.WebSocketException, OSError):
            pass
        self.frames.put(CLOSED)

    def send(self, frame: str) -> None:
        self.ws.send(frame)

    def recv(self, timeout: float = 10) -> str:
        """The next Socket.IO frame."""
        frame = self.frames.get(timeout=timeout)
        if frame is CLOSED:
            self.frames.put(CLOSED)
            raise ConnectionError("the server closed the connection")
        return frame

    def closed(self, timeout: float = 5) -> bool:
        """Whether the server closes the connection within ``timeout`` (frames before the
        close are skipped)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.recv(max(deadline - time.monotonic(), 0.01))
        except ConnectionError:
            return True
        except queue.Empty:
            return False

    def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        """Emit ``event`` with an ack id; the ack's first argument."""
        self._next_id += 1
        ack_id = self._next_id
        self.send(f"42{self.namespace},{ack_id}{json.dumps([event, *args])}")
        return self.ack(ack_id, timeout)

    def ack(self, ack_id: int, timeout: float = 10) -> Any:
        """Wait for the acknowledgement ``ack_id``, skipping other frames."""
        return self._wait(f"43{self.namespace},{ack_id}", lambda args: (True, args[0]), timeout)

    def event(self, name: str, timeout: float = 10) -> Any:
        """Wait for the event ``name`` on the namespace, skipping other frames."""
        def named(args: list) -> tuple[bool, Any]:
            return args[0] == name, args[1] if len(args) > 1 else None

        return self._wait(f"42{self.namespace},", named, timeout)

    def _wait(self, prefix: str, match: Callable[[list], tuple[bool, Any]],
              timeout: float) -> Any:
        """The value ``match(args)`` gives for the first frame ``prefix[args...]`` it
        accepts (``(accepted, value)``), skipping every other frame."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(deadline - time.monotonic(), 0.01))
            if frame.startswith(prefix + "["):
                accepted, value = match(json.loads(frame[len(prefix):]))
                if accepted:
                    return value

    def close(self) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):  # closed already
            self.ws.close(timeout=1)
        self.reader.join(5)
