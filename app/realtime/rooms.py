"""python-socketio's room bookkeeping, with an index from each client to its rooms.

python-socketio's manager finds a client's rooms by looking in every room of the
namespace, and every client has a room of its own: a disconnect, or ``rooms(sid)``,
takes time in proportion to the clients connected, so N clients leaving at once (a
network blip, a proxy restarting) cost N² (4000 clients: seconds of CPU in which no
other client is served). ``RoomIndex`` keeps each client's rooms, so both take time in
proportion to the client's own rooms.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import socketio


class RoomIndex:
    """A mixin for a python-socketio client manager (before it in the bases)."""

    rooms: dict[str, dict[Hashable, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (namespace, sid) -> its rooms, in the order it entered them (a dict as an
        # ordered set); None (every client's) and its own sid's room included.
        self.rooms_of: dict[tuple[str, str], dict[Hashable, None]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Hashable,
                         eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.rooms_of.setdefault((namespace, sid), {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: Hashable) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self.rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:  # (under `flask run`, another thread may have got here first)
                self.rooms_of.pop((namespace, sid), None)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """What python-socketio's does: the client leaves its rooms, its pending
        acknowledgements and its place in the connecting and disconnecting lists."""
        for room in list(self.rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Hashable]:
        """The rooms ``sid`` is in (its own among them), in the order it entered them."""
        return [room for room in self.rooms_of.get((namespace, sid), ()) if room is not None]


class RoomManager(RoomIndex, socketio.Manager):
    """The client manager of a process without a message queue."""
