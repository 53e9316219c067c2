"""The ``/demo`` namespace: Flask-SocketIO's classic example, event names included."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, copy_current_request_context, current_app, request, session
from flask_socketio import close_room, disconnect, emit, join_room, leave_room, rooms
from sqlalchemy import func, select

from app.auth.sockets import authenticate, credential_room, socket_user, user_room
from app.chat.rules import ClientError, payload, room_name
from app.extensions import db, socketio
from app.models import User
from app.realtime.namespace import RealtimeNamespace

MAX_DATA = 1000


class DemoNamespace(RealtimeNamespace):
    """Echo, broadcast, rooms, ping/pong, server-side disconnect and a background ticker."""

    def __init__(self, namespace: str = "/demo") -> None:
        super().__init__(namespace)
        self.ticker: Any = None  # the background task, once started
        self.ticker_lock = threading.Lock()
        self.ticks = 0

    def on_connect(self, auth: Any = None) -> None:
        """Any logged-in user or token holder connects; the first one starts the ticker."""
        authenticate(auth)
        db.session.rollback()
        self.start_ticker(current_app._get_current_object())
        emit("my_response", {"data": "Connected", "count": 0})

    def on_my_event(self, message: Any = None) -> None:
        """Client -> server ``{data}``; the sender gets ``my_response`` with its count."""
        emit("my_response", {"data": self._data(message), "count": self._count()})

    def on_my_broadcast_event(self, message: Any = None) -> None:
        """Client -> server ``{data}``; every client of the namespace gets ``my_response``."""
        data = self._data(message)
        emit("my_response", {"data": data, "count": self._count()}, broadcast=True)

    def on_join(self, message: Any = None) -> None:
        """Client -> server ``{room}``; the sender gets ``my_response`` listing its rooms."""
        join_room(self._room(message))
        self._rooms_response()

    def on_leave(self, message: Any = None) -> None:
        """Client -> server ``{room}``; the sender gets ``my_response`` listing its rooms."""
        leave_room(self._room(message))
        self._rooms_response()

    def on_close_room(self, message: Any = None) -> None:
        """Client -> server ``{room}``; the room is told, then closed."""
        room = self._room(message)
        emit("my_response", {"data": f"Room {room} is closing.", "count": self._count()},
             to=room)
        close_room(room)

    def on_my_room_event(self, message: Any = None) -> None:
        """Client -> server ``{room, data}``; everyone in the room gets ``my_response``."""
        room, data = self._room(message), self._data(message)
        emit("my_response", {"data": data, "count": self._count()}, to=room)

    def on_disconnect_request(self, message: Any = None) -> None:
        """Client -> server; answered by ``my_response``, disconnected once the client acks it."""

        @copy_current_request_context
        def can_disconnect(*args: Any) -> None:
            disconnect()

        emit("my_response", {"data": "Disconnected!", "count": self._count()},
             callback=can_disconnect)

    def on_my_ping(self, message: Any = None) -> None:
        """Client -> server; the sender gets ``my_pong`` (the page times the round trip)."""
        emit("my_pong")

    def start_ticker(self, app: Flask) -> bool:
        """Start the background ticker unless this process already runs it."""
        with self.ticker_lock:
            if self.ticker is not None:
                return False
            self.ticker = socketio.start_background_task(self._tick_forever, app)
            return True

    def tick(self, app: Flask) -> None:
        """Emit one server-generated ``my_response`` to every client of the namespace."""
        with app.app_context():
            try:
                self.ticks += 1
                users = db.session.scalar(select(func.count()).select_from(User))
                # Every process ticks for its own clients: through the message queue
                # each client would get one tick per process.
                socketio.emit("my_response", {"data": "Server generated event",
                                              "count": self.ticks, "users": users},
                              namespace=self.namespace, ignore_queue=True)
            finally:
                db.session.remove()

    def _tick_forever(self, app: Flask) -> None:
        interval = app.config["DEMO_TICK_SECONDS"]
        while True:
            socketio.sleep(interval)
            try:
                self.tick(app)
            except Exception:  # noqa: BLE001 - a failed tick is logged; the next one runs
                app.logger.exception("demo ticker failed")

    def _count(self) -> int:
        session["receive_count"] = session.get("receive_count", 0) + 1
        return session["receive_count"]

    def _room(self, message: Any) -> str:
        return room_name(payload(message).get("room"), socket_user()["id"])

    def _data(self, message: Any) -> str:
        data = payload(message).get("data")
        if not isinstance(data, str) or len(data) > MAX_DATA:
            raise ClientError(f"data must be a string of at most {MAX_DATA} characters")
        return data

    def _rooms_response(self) -> None:
        own = {request.sid, user_room(socket_user()["id"])}  # and its credential's room
        joined = sorted(r for r in rooms() if r not in own and not credential_room(r))
        emit("my_response", {"data": "In rooms: " + ", ".join(joined), "count": self._count()})
