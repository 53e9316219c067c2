"""The ``/chat`` namespace: group chat in named rooms and private messages (docs/realtime.md)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_socketio import emit, join_room, leave_room

from app.auth.sockets import authenticate, socket_user
from app.chat import store
from app.chat.hub import NAMESPACE, ChatHub
from app.chat.relay import ChatRelay
from app.chat.rules import (
    ClientError,
    TokenBucket,
    client_id,
    message_text,
    payload,
    quoted,
    room_name,
)
from app.extensions import db, socketio
from app.realtime.namespace import RealtimeNamespace


def chat_namespace() -> ChatNamespace:
    """The ``/chat`` namespace object of the current app's Socket.IO server."""
    return socketio.server.namespace_handlers[NAMESPACE]


class ChatNamespace(RealtimeNamespace):
    """Rooms with history and presence, private messages, per-connection rate limits."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        super().__init__(namespace)
        self.hub = ChatHub(namespace)
        self.relay = ChatRelay(self.hub, namespace)
        self.buckets: dict[str, TokenBucket] = {}

    def on_connect(self, auth: Any = None) -> None:
        """A logged-in browser or a token holder connects; private messages missed are sent."""
        user = authenticate(auth)
        self.relay.start(current_app._get_current_object())
        self.buckets[request.sid] = TokenBucket()
        emit("status", {"room": None, "text": f"connected as {user.username}"})
        self.relay.open_user(user.id)
        missed = self.relay.replayable(store.undelivered(user.id))
        for message in missed:
            emit("private", message.to_dict())
        store.mark_delivered(missed)
        db.session.rollback()

    def on_disconnect(self, reason: Any = None) -> None:
        """The client went away: it leaves its rooms ("X left" when it was the last tab)."""
        self.buckets.pop(request.sid, None)
        self.hub.leave_all(request.sid)

    def on_join(self, data: Any = None) -> dict[str, Any]:
        """Client -> server ``{room}``; the ack has the room's users and last 50 messages
        (every later one comes as a ``message`` event)."""
        me = socket_user()
        room = room_name(payload(data).get("room"), me["id"])

        def enter() -> None:
            join_room(room)
            self.hub.join(request.sid, me["username"], room)

        upto = self.relay.open_room(room, enter)
        history = [m.to_dict() for m in store.room_history(room, upto=upto)]
        return {"ok": True, "room": room, "users": self.hub.users(room), "history": history}

    def on_leave(self, data: Any = None) -> dict[str, Any]:
        """Client -> server ``{room}``; the ack confirms, the room is told "X left"."""
        room = payload(data).get("room")
        if room not in self.hub.rooms_of(request.sid):
            raise ClientError("you are not in that room")
        leave_room(room)
        self.hub.leave(request.sid, room)
        return {"ok": True, "room": room}

    def on_message(self, data: Any = None) -> dict[str, Any]:
        """Client -> server ``{room, text, id?}``; everyone in the room gets ``message``."""
        data = payload(data)
        me = socket_user()
        room = data.get("room")
        text, cid = message_text(data.get("text")), client_id(data.get("id"))
        if room not in self.hub.rooms_of(request.sid):
            raise ClientError("join the room first")
        self._rate_limit()
        message, new = store.save_message(me["id"], text, room=room, client_id=cid)
        out = message.to_dict()
        if new:
            self.relay.send(message)
        return {"ok": True, "message": out, "duplicate": not new}

    def on_private(self, data: Any = None) -> dict[str, Any]:
        """Client -> server ``{to, text, id?}``; every open session of ``to`` gets ``private``."""
        data = payload(data)
        me = socket_user()
        text, cid = message_text(data.get("text")), client_id(data.get("id"))
        if not isinstance(data.get("to"), str) or (to := store.user_named(data["to"])) is None:
            raise ClientError(f"unknown user {quoted(data.get('to'))}")
        self._rate_limit()
        message, new = store.save_message(me["id"], text, recipient_id=to.id, client_id=cid)
        out = message.to_dict()
        # Every process holding a socket of the recipient delivers it and marks it
        # delivered (app.chat.relay); else the recipient gets it on their next connection.
        if new and self.relay.send(message):
            store.mark_delivered([message])
        return {"ok": True, "message": out, "duplicate": not new}

    def on_history(self, data: Any = None) -> dict[str, Any]:
        """Client -> server ``{room}`` or ``{with: username}``; the ack has the last 50 messages."""
        data = payload(data)
        me = socket_user()
        if "with" in data:
            other = store.user_named(data["with"]) if isinstance(data["with"], str) else None
            if other is None:
                raise ClientError(f"unknown user {quoted(data['with'])}")
            messages = store.private_history(me["id"], other.id)
        else:
            messages = store.room_history(room_name(data.get("room"), me["id"]))
        return {"ok": True, "messages": [m.to_dict() for m in messages]}

    def _rate_limit(self) -> None:
        self.buckets.setdefault(request.sid, TokenBucket()).check()
