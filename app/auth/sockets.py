"""Authentication of Socket.IO connections: the login session or an API token."""

from __future__ import annotations

from typing import Any

from flask import current_app, session
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, join_room
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from app.auth.tokens import TokenHolder, user_for_token
from app.chat.hub import chat_hub, close_user_bridges
from app.cluster import ClusterManager, current_cluster
from app.extensions import db, socketio
from app.models import User

SESSION_KEY = "socket_user"
SESSION_ROOM = "session:"
# The refusal while the database does not answer: the pages' clients try again later.
UNAVAILABLE = "unavailable: the database is not answering, try again in a few seconds"
NAMESPACES = ("/users", "/chat", "/demo")


def user_room(user_id: int) -> str:
    """The room every socket of one user is in, in every namespace."""
    return f"user:{user_id}"


def session_room(user_id: int, epoch: int) -> str:
    """The room of the sockets opened with a login session of ``user_id`` made at
    ``epoch`` (its ``session_epoch`` then; logging out moves it on)."""
    return f"{SESSION_ROOM}{user_id}:{epoch}"


def authenticate(auth: Any) -> User | TokenHolder:
    """The user connecting (browser session, else ``auth={"token": ...}``).

    Raises ConnectionRefusedError (the client gets ``connect_error``) for anyone else,
    and, saying ``UNAVAILABLE``, while the database does not answer.
    On success the socket joins the user's room and its Socket.IO session remembers
    the user, so handlers need no database query to know who is speaking.
    """
    user: User | TokenHolder | None = None
    try:
        if current_user.is_authenticated and current_user.is_active:
            user = current_user._get_current_object()
            join_room(session_room(user.id, user.session_epoch))
        elif isinstance(auth, dict):
            user = user_for_token(auth.get("token"))
    except DBAPIError:
        db.session.rollback()
        raise ConnectionRefusedError(UNAVAILABLE) from None
    if user is None:
        db.session.rollback()
        raise ConnectionRefusedError("authentication required: log in or pass auth={'token': ...}")
    session[SESSION_KEY] = {"id": user.id, "username": user.username, "role": user.role}
    join_room(user_room(user.id))
    # The live feed also enforces deactivations on this process's sockets: make sure
    # it runs wherever anyone is connected, whatever the namespace.
    current_app.extensions["live_feed"].start()
    return user


def socket_user() -> dict[str, Any]:
    """``{"id", "username", "role"}`` of the socket handling the current event."""
    return session[SESSION_KEY]


def online_user_ids() -> set[int]:
    """The users with any connection in this process (Socket.IO or plain WebSocket)."""
    rooms = socketio.server.manager.rooms
    ids = {int(room.removeprefix("user:")) for namespace in NAMESPACES
           for room in rooms.get(namespace, {}) if isinstance(room, str)
           and room.startswith("user:")}
    hub = chat_hub()
    return ids | set(hub.bridges) if hub is not None else ids


def disconnect_local(user_id: int) -> None:
    """Close every connection of ``user_id`` in this process: Socket.IO, every namespace,
    and the plain WebSockets of the chat bridge."""
    manager = socketio.server.manager
    for namespace in NAMESPACES:
        sids = [sid for sid, _ in manager.get_participants(namespace, user_room(user_id))]
        for sid in sids:
            socketio.server.disconnect(sid, namespace=namespace, ignore_queue=True)
    close_user_bridges(user_id)


def disconnect_everywhere(user_id: int) -> None:
    """Close every connection of ``user_id`` on every process: here at once, on the
    others through the message queue (a notice each handles with ``disconnect_local``).

    While Redis is down the notice is lost: the other processes close the sockets of
    an ended login session at their next ``close_ended_sessions`` instead.
    """
    disconnect_local(user_id)
    if (cluster := current_cluster()) is not None:
        cluster.notify("disconnect_user", user_id=user_id)


def close_ended_sessions() -> int:
    """Close this process's sockets whose login session has ended (its user's
    ``session_epoch`` moved on, on any process); returns how many.

    The message queue closes them at once (``disconnect_everywhere``); this sweep, run
    by the live feed every ``SESSION_SWEEP_SECONDS``, reads the database instead, so a
    logout on another process also closes them while the queue is down.
    """
    manager = socketio.server.manager
    rooms = {(namespace, room) for namespace in NAMESPACES
             for room in list(manager.rooms.get(namespace, {}))
             if isinstance(room, str) and room.startswith(SESSION_ROOM)}
    if not rooms:
        return 0
    opened = {room: tuple(map(int, room.removeprefix(SESSION_ROOM).split(":")))
              for _, room in rooms}
    ids = sorted({user_id for user_id, _ in opened.values()})
    epochs: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        epochs.update(db.session.execute(select(User.id, User.session_epoch).where(
            User.id.in_(ids[start:start + 500]))).tuples().all())
    db.session.rollback()  # end the read before any I/O towards the clients
    closed = 0
    for namespace, room in rooms:
        user_id, epoch = opened[room]
        if epochs.get(user_id) == epoch:
            continue
        for sid, _ in list(manager.get_participants(namespace, room)):
            socketio.server.disconnect(sid, namespace=namespace, ignore_queue=True)
            closed += 1
    return closed


def listen_for_disconnects(cluster: ClusterManager) -> None:
    """Handle other processes' ``disconnect_everywhere``."""
    cluster.on("disconnect_user", lambda notice: disconnect_local(int(notice["user_id"])))
