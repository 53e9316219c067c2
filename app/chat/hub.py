"""Who is in which chat room in this process, and delivery to both kinds of client.

A connection is a Socket.IO sid or a plain WebSocket (see ``bridge``); both join rooms
here, so presence lists and "X joined" / "X left" cover them alike. The plain WebSockets
are also kept by user, so that a deactivated or deleted user's can be closed
(``close_user_bridges``, called where the Socket.IO connections are closed).

This module imports nothing of the app but its extensions, so that ``app.auth.sockets``
may import it.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, Protocol

from app.extensions import socketio

NAMESPACE = "/chat"
POLICY_VIOLATION = 1008
ACCOUNT_GONE = "account deactivated"
TOKEN_REVOKED = "token revoked or expired"
# A plain WebSocket with this many frames waiting behind a send is cut off; a close
# frame it cannot take within CLOSE_GRACE seconds, too (deactivations close in 3 s).
MAX_QUEUED = 1000
CLOSE_GRACE = 2.0


class PlainWebSocket(Protocol):
    """What the hub needs of ``app.websocket.LimitedWebSocket``."""

    OPCODE_CLOSE: int
    closed: bool

    def send(self, message: str) -> Any: ...

    def send_frame(self, message: bytes, opcode: int) -> Any: ...

    def abort(self) -> None: ...


@dataclass(eq=False)
class Bridge:
    """One plain WebSocket in one room.

    Its frames go out in order through its own queue and writer (``write``, a background
    task), so that a client that reads slowly holds up no other client and no sender:
    not the relay delivering a room's messages, not the feed closing a deactivated
    user's sockets. A client too far behind is cut off (``abort``), and can read what it
    missed from the history: once one send has waited ``send_timeout`` seconds (it stopped
    reading and the connection's buffers are full), or ``MAX_QUEUED`` frames wait while
    a send is under way (it reads, but slower than the room talks), the next frame cuts it
    off; a close frame that cannot go out within ``CLOSE_GRACE`` seconds, too.
    """

    conn: str
    user_id: int
    room: str
    ws: PlainWebSocket
    send_timeout: float = 10.0
    token_hash: str = ""  # the SHA-256 of the API token it was opened with
    ending: bool = field(default=False, init=False)  # closing or cut off: nothing more goes
    sending_since: float | None = field(default=None, init=False)  # the current send's start
    queue: SimpleQueue = field(default_factory=SimpleQueue, init=False)
    done: threading.Event = field(default_factory=threading.Event, init=False)  # writer ended

    def send(self, frame: str) -> bool:
        """Queue one text frame; False when the socket is closed, closing or cut off."""
        if self.ending or self.ws.closed:
            return False
        since = self.sending_since
        if since is not None and (time.monotonic() - since > self.send_timeout
                                  or self.queue.qsize() >= MAX_QUEUED):
            self.ending = True
            self.ws.abort()
            return False
        self.queue.put(frame)
        return True

    def close(self, code: int, reason: str, error: str | None = None) -> None:
        """``close_socket`` once the frames queued before are out, or else cut the
        connection off after ``CLOSE_GRACE`` seconds."""
        if not self.ending:
            self.ending = True
            self.queue.put((code, reason, error))
            socketio.start_background_task(self._cut_unless_done, CLOSE_GRACE)

    def finish(self) -> None:
        """The connection ends: let the writer send what is queued (a close frame, say)
        within the send timeout, then stop it."""
        self.ending = True
        self.queue.put(None)
        self._cut_unless_done(self.send_timeout)

    def _cut_unless_done(self, seconds: float) -> None:
        if not self.done.wait(seconds):
            self.ws.abort()

    def write(self) -> None:
        """The writer: send what is queued, in order, until the socket closes."""
        try:
            while not self.ws.closed and (item := self.queue.get()) is not None:
                self.sending_since = time.monotonic()
                try:
                    if isinstance(item, tuple):
                        close_socket(self.ws, *item)
                    else:
                        self.ws.send(item)
                except Exception:  # noqa: BLE001 - gevent-websocket raises several kinds
                    self.ws.abort()
                finally:
                    self.sending_since = None
        finally:
            self.done.set()


def close_socket(ws: PlainWebSocket, code: int, reason: str, error: str | None = None) -> None:
    """Send ``{"error": error}`` (when given), then a close frame with a status code.

    gevent-websocket's own ``close`` sends the reason without the code. The socket is
    marked closed at once, so every later send (from any greenlet) is skipped; the
    peer's closing reply then ends the reading loop of ``bridge.serve``.
    """
    if ws.closed:
        return
    try:
        if error is not None:
            ws.send(json.dumps({"error": error}))
        ws.send_frame(struct.pack("!H", code) + reason.encode()[:120], opcode=ws.OPCODE_CLOSE)
    except Exception:  # noqa: BLE001 - a dead peer is closed all the same
        pass
    finally:
        ws.closed = True


class ChatHub:
    """Room membership (connection -> username), the plain WebSockets of each room and
    of each user, all for this process only."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.lock = threading.Lock()
        self.members: dict[str, dict[str, str]] = defaultdict(dict)  # room -> conn -> name
        self.sockets: dict[str, dict[str, Bridge]] = defaultdict(dict)  # room -> conn -> bridge
        self.bridges: dict[int, dict[str, Bridge]] = defaultdict(dict)  # user id -> conn -> bridge

    def join(self, conn: str, username: str, room: str, bridge: Bridge | None = None) -> bool:
        """Add a connection to a room (announced when it is the user's first there)."""
        with self.lock:
            if conn in self.members[room]:
                return False
            first = username not in self.members[room].values()
            self.members[room][conn] = username
            if bridge is not None:
                self.sockets[room][conn] = bridge
                self.bridges[bridge.user_id][conn] = bridge
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
            bridge = self.sockets.get(room, {}).pop(conn, None)
            if bridge is not None:
                mine = self.bridges.get(bridge.user_id, {})
                mine.pop(conn, None)
                if not mine:
                    self.bridges.pop(bridge.user_id, None)
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

    def bridges_of(self, user_id: int) -> list[Bridge]:
        """The plain WebSockets of one user in this process."""
        with self.lock:
            return list(self.bridges.get(user_id, {}).values())

    def close_user(self, user_id: int, code: int = POLICY_VIOLATION,
                   reason: str = ACCOUNT_GONE) -> int:
        """Close every plain WebSocket of ``user_id`` here and take it out of its room.

        Returns how many were closed. They leave their rooms at once, so nothing more
        reaches them even if the peer never answers the close frame.
        """
        bridges = self.bridges_of(user_id)
        for bridge in bridges:
            bridge.close(code, reason, error=reason)
            self.leave(bridge.conn, bridge.room)
        return len(bridges)

    def token_hashes(self) -> set[str]:
        """The token hashes of this process's plain WebSockets."""
        with self.lock:
            return {b.token_hash for mine in self.bridges.values() for b in mine.values()}

    def close_tokens(self, token_hashes: set[str]) -> int:
        """Close the plain WebSockets opened with these tokens, as ``close_user`` does."""
        with self.lock:
            bridges = [b for mine in self.bridges.values() for b in mine.values()
                       if b.token_hash in token_hashes]
        for bridge in bridges:
            bridge.close(POLICY_VIOLATION, TOKEN_REVOKED, error=TOKEN_REVOKED)
            self.leave(bridge.conn, bridge.room)
        return len(bridges)

    def status(self, room: str, text: str) -> None:
        socketio.emit("status", {"room": room, "text": text}, to=room, namespace=self.namespace)

    def presence(self, room: str) -> None:
        socketio.emit("presence", {"room": room, "users": self.users(room)}, to=room,
                      namespace=self.namespace)

    def send_bridges(self, room: str, message: dict[str, Any]) -> None:
        """A room message to the room's plain WebSockets in this process."""
        frame = json.dumps(message)
        with self.lock:
            targets = list(self.sockets.get(room, {}).values())
        for bridge in targets:
            if not bridge.send(frame):  # a dead socket is removed, the rest still get it
                self.leave(bridge.conn, room)


def chat_hub() -> ChatHub | None:
    """The hub of the ``/chat`` namespace of the current Socket.IO server, if registered."""
    server = getattr(socketio, "server", None)
    handler = server.namespace_handlers.get(NAMESPACE) if server is not None else None
    return getattr(handler, "hub", None)


def close_user_bridges(user_id: int) -> None:
    """Close every plain WebSocket (``/ws/chat/<room>``) of ``user_id`` in this process
    with code 1008 and the reason "account deactivated".

    Call it wherever a deactivated or deleted user's Socket.IO connections are closed
    (``app.auth.sockets.disconnect_local``); like them, it only reaches this process.
    """
    hub = chat_hub()
    if hub is not None:
        hub.close_user(user_id)
