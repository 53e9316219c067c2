"""A python-socketio client of the live users table, for the end-to-end tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import engineio
import socketio

NS = "/users"


class InOrderEngineIO(engineio.Client):
    """Engine.IO's client handles each message in a thread of its own, so two frames may
    be recorded out of order: here each is handled before the next is read (handlers
    must then not wait for an answer: acknowledgements arrive through callbacks)."""

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    def _engineio_client_class(self) -> type[engineio.Client]:
        return InOrderEngineIO


class LiveClient:
    """Connects to /users, subscribes, and records every change it is sent."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.changes: list[dict[str, Any]] = []
        self.cursor: int | None = None
        self.disconnected = threading.Event()
        self._arrived = threading.Condition()
        self.sio = InOrderClient(reconnection=False)  # frames recorded as they came
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


class ResumingClient:
    """A /users client that behaves like the dashboard (app/static/js/live.js): on every
    connection it subscribes with the last cursor it saw; whenever the connection ends
    (a dead process, a server's close) it connects again, as long as it is not closed.

    Every change is recorded as delivered, duplicates included: the test judges them.
    """

    RETRY = 1.0  # seconds between connection attempts (the dashboard: 1 s, backing off to 3 s)

    def __init__(self, url: str, token: str, name: str = "",
                 transports: tuple[str, ...] = ("websocket",)) -> None:
        self.url = url
        self.token = token
        self.name = name or url
        self.transports = list(transports)  # ("polling", "websocket"): as browsers do
        self.cursor: int | None = None
        self.start: int | None = None  # the cursor of the first snapshot
        self.received: list[dict[str, Any]] = []  # from acks and events, in arrival order
        self.received_at: dict[int, float] = {}  # cursor -> time.monotonic() of arrival
        self.replayed = 0  # changes that came in the ack of a resuming subscribe
        self.problems: list[str] = []  # snapshots on a resume, error acks
        self.connections = 0
        self.subscribed = threading.Event()
        self._arrived = threading.Condition()
        self._closed = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._keep_connected, daemon=True)

    def open(self, timeout: float = 10) -> ResumingClient:
        """Connect and subscribe (a snapshot); returns once subscribed."""
        self._thread.start()
        assert self.subscribed.wait(timeout), f"{self.name}: never subscribed"
        return self

    def _keep_connected(self) -> None:
        while not self._closed.is_set():
            sio = InOrderClient(reconnection=False)
            sio.on("connect", lambda sio=sio: self._subscribe(sio), namespace=NS)
            sio.on("change", lambda change: self._record([change]), namespace=NS)
            sio.on("changes", self._record, namespace=NS)
            sio.on("disconnect", lambda *a: self._lost.set(), namespace=NS)
            self._lost.clear()
            try:
                sio.connect(self.url, namespaces=[NS], auth={"token": self.token},
                            transports=self.transports, wait_timeout=5)
            except socketio.exceptions.ConnectionError:
                self._closed.wait(self.RETRY)
                continue
            self.connections += 1
            while not (self._lost.wait(0.1) or self._closed.is_set()):
                pass
            self.subscribed.clear()
            sio.disconnect()
            self._closed.wait(self.RETRY)

    def _subscribe(self, sio: socketio.Client) -> None:
        sio.emit("subscribe", {"since": self.cursor}, namespace=NS, callback=self._acked)

    def _acked(self, ack: dict[str, Any]) -> None:
        if "error" in ack:
            self.problems.append(f"subscribe refused: {ack['error']}")
            return
        if "rows" in ack:
            if self.start is not None:
                self.problems.append(f"a snapshot on resuming from {self.cursor}")
            self.start = ack["cursor"]
        else:
            self.replayed += len(ack["changes"])
            self._record(ack["changes"])
        self.cursor = max(self.cursor or 0, ack["cursor"])
        self.subscribed.set()

    def _record(self, changes: list[dict[str, Any]]) -> None:
        with self._arrived:
            now = time.monotonic()
            for change in changes:
                self.received.append(change)
                self.received_at.setdefault(change["cursor"], now)
            if changes:
                self.cursor = changes[-1]["cursor"]
            self._arrived.notify_all()

    def cursors(self) -> list[int]:
        with self._arrived:
            return [c["cursor"] for c in self.received]

    def wait_for_cursor(self, cursor: int, timeout: float = 15) -> float:
        """Wait until a change with this cursor (or a later one) arrived; its arrival."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not self.received or self.received[-1]["cursor"] < cursor:
                left = deadline - time.monotonic()
                if left <= 0:
                    last = self.received[-1]["cursor"] if self.received else None
                    raise AssertionError(f"{self.name}: change {cursor} not received "
                                         f"(last: {last})")
                self._arrived.wait(left)
            return self.received_at.get(cursor, time.monotonic())

    def close(self) -> None:
        self._closed.set()
        self._thread.join(10)
