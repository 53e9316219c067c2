"""A python-socketio client of the live users table, for the end-to-end tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import socketio

NS = "/users"


class LiveClient:
    """Connects to /users, subscribes, and records every change it is sent."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.changes: list[dict[str, Any]] = []
        self.cursor: int | None = None
        self.disconnected = threading.Event()
        self._arrived = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("change", self._on_change, namespace=NS)
        self.sio.on("changes", self._on_changes, namespace=NS)
        self.sio.on("disconnect", lambda *a: self.disconnected.set(), namespace=NS)

    def connect(self, **kwargs: Any) -> LiveClient:
        auth = {"token": self.token} if self.token else None
        self.sio.connect(self.url, namespaces=[NS], auth=auth, transports=["websocket"],
                         wait_timeout=10, **kwargs)
        return self

    def subscribe(self, since: int | None) -> dict[str, Any]:
        ack = self.sio.call("subscribe", {"since": since}, namespace=NS, timeout=10)
        if "cursor" in ack:
            self.cursor = ack["cursor"]
        return ack

    def _on_change(self, change: dict[str, Any]) -> None:
        self._on_changes([change])

    def _on_changes(self, changes: list[dict[str, Any]]) -> None:
        with self._arrived:
            self.changes.extend(changes)
            self.cursor = changes[-1]["cursor"]
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """Wait until ``count`` changes arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.changes) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.changes)} of {count} changes")
                self._arrived.wait(left)
            return list(self.changes)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()
