"""Who is in which chat room in this process, and delivery to both kinds of client.

A connection is a Socket.IO sid or a plain WebSocket (see ``bridge``); both join rooms
here, so presence lists and "X joined" / "X left" cover them alike.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any, Protocol

from app.extensions import socketio


class TextSocket(Protocol):
    """What the hub needs of a plain WebSocket: send one text frame."""

    def send(self, message: str) -> Any: ...


class ChatHub:
    """Room membership (connection -> username) and the plain WebSockets of each room."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.lock = threading.Lock()
        self.members: dict[str, dict[str, str]] = defaultdict(dict)  # room -> conn -> name
        self.sockets: dict[str, dict[str, TextSocket]] = defaultdict(dict)  # room -> conn -> ws
        self.send_locks: dict[str, threading.Lock] = {}

    def join(self, conn: str, username: str, room: str, ws: TextSocket | None = None) -> bool:
        """Add a connection to a room (announced when it is the user's first there)."""
        with self.lock:
            if conn in self.members[room]:
                return False
            first = username not in self.members[room].values()
            self.members[room][conn] = username
            if ws is not None:
                self.sockets[room][conn] = ws
                self.send_locks[conn] = threading.Lock()
        if first:
            self.status(room, f"{username} joined")
        self.presence(room)
        return True

    def leave(self, conn: str, room: str) -> bool:
        """Remove a connection from a room (announced when it was the user's last there)."""
        with self.lock:
            username = self.members.get(room, {}).pop(conn, None)
            if username is None:
                return False
            self.sockets.get(room, {}).pop(conn, None)
            if not any(conn in by_conn for by_conn in self.sockets.values()):
                self.send_locks.pop(conn, None)
            last = username not in self.members[room].values()
            if not self.members[room]:
                del self.members[room]
                self.sockets.pop(room, None)
        if last:
            self.status(room, f"{username} left")
        self.presence(room)
        return True

    def leave_all(self, conn: str) -> None:
        """A connection went away: it leaves every room it was in."""
        for room in self.rooms_of(conn):
            self.leave(conn, room)

    def rooms_of(self, conn: str) -> list[str]:
        with self.lock:
            return sorted(room for room, by_conn in self.members.items() if conn in by_conn)

    def users(self, room: str) -> list[str]:
        """Names of the users in a room (connected to this process)."""
        with self.lock:
            return sorted(set(self.members.get(room, {}).values()))

    def status(self, room: str, text: str) -> None:
        socketio.emit("status", {"room": room, "text": text}, to=room, namespace=self.namespace)

    def presence(self, room: str) -> None:
        socketio.emit("presence", {"room": room, "users": self.users(room)}, to=room,
                      namespace=self.namespace)

    def publish(self, message: dict[str, Any]) -> None:
        """A room message to the room's Socket.IO clients (every process) and WebSockets (here)."""
        room = message["room"]
        socketio.emit("message", message, to=room, namespace=self.namespace)
        frame = json.dumps(message)
        with self.lock:
            targets = [(conn, ws, self.send_locks[conn])
                       for conn, ws in self.sockets.get(room, {}).items()]
        for conn, ws, send_lock in targets:
            try:
                with send_lock:  # one frame at a time per socket
                    ws.send(frame)
            except Exception:  # noqa: BLE001 - a dead socket is removed, the rest still get it
                self.leave(conn, room)
