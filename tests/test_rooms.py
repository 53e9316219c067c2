"""The client manager's room index (app/realtime/rooms.py) against python-socketio's own
manager: the same random connects, joins, leaves, room closes and disconnects leave both
with the same rooms, and each client's rooms read the same (in any order)."""

from __future__ import annotations

import itertools
import random

import pytest
import socketio

from app.realtime.rooms import RoomManager

NAMESPACES = ("/users", "/chat")
ROOMS = ("feed", "views", "user:1", "user:2", "session:a", "token:b")


class Server:
    """What a manager needs of its server: new sids and the packet class's JSON."""

    def __init__(self) -> None:
        self.eio = self
        self._ids = itertools.count(1)
        self.packet_class = socketio.packet.Packet

    def generate_id(self) -> str:
        return f"sid{next(self._ids)}"


def managers() -> tuple[socketio.Manager, RoomManager]:
    pair = socketio.Manager(), RoomManager()
    for manager in pair:
        manager.set_server(Server())
    return pair


@pytest.mark.parametrize("seed", range(5))
def test_rooms_and_each_clients_rooms_match_python_socketios(seed):
    rng = random.Random(seed)
    theirs, ours = managers()
    connected: list[tuple[str, str]] = []
    for step in range(3000):
        action = rng.random()
        if action < 0.2 or not connected:
            namespace = rng.choice(NAMESPACES)
            sids = {m.connect(f"eio{step}", namespace) for m in (theirs, ours)}
            assert len(sids) == 1
            connected.append((sids.pop(), namespace))
            continue
        sid, namespace = rng.choice(connected)
        room = rng.choice(ROOMS)
        for manager in (theirs, ours):
            if action < 0.55:
                manager.enter_room(sid, namespace, room)
            elif action < 0.8:
                manager.leave_room(sid, namespace, room)
            elif action < 0.85:
                manager.close_room(room, namespace)
            else:
                manager.pre_disconnect(sid, namespace)
                manager.disconnect(sid, namespace)
        if action >= 0.85:
            connected.remove((sid, namespace))
        assert ours.rooms == theirs.rooms
        assert ours.pending_disconnect == theirs.pending_disconnect
        for sid, namespace in rng.sample(connected, min(5, len(connected))):
            assert sorted(ours.get_rooms(sid, namespace)) == sorted(
                theirs.get_rooms(sid, namespace))  # the order is python-socketio's own
    for sid, namespace in connected:
        assert sorted(ours.get_rooms(sid, namespace)) == sorted(theirs.get_rooms(sid, namespace))


def test_a_client_leaving_takes_no_time_from_the_others():
    """Disconnecting one client looks at its own rooms, not at every client's."""
    _, ours = managers()
    sids = [ours.connect(f"eio{n}", "/users") for n in range(2000)]
    for sid in sids:
        ours.enter_room(sid, "/users", "feed")
    looked_at = []
    ours.rooms["/users"] = WatchedRooms(ours.rooms["/users"], looked_at)
    ours.disconnect(sids[0], "/users")
    assert len(looked_at) < 10
    assert sids[0] not in ours.rooms["/users"]["feed"]
    assert ours.get_rooms(sids[1], "/users") == [sids[1], "feed"]


class WatchedRooms(dict):
    """A namespace's rooms that note every room looked up or listed."""

    def __init__(self, rooms: dict, looked_at: list) -> None:
        super().__init__(rooms)
        self.looked_at = looked_at

    def __getitem__(self, room):
        self.looked_at.append(room)
        return super().__getitem__(room)

    def items(self):
        self.looked_at.extend(self)
        return super().items()

    def copy(self):
        self.looked_at.extend(self)
        return super().copy()
