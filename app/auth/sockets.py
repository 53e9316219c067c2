"""Authentication of Socket.IO connections: the login session or an API token."""

from __future__ import annotations

from typing import Any

from flask import current_app, session
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, join_room
from sqlalchemy.exc import DBAPIError

from app.auth.sessions import live_digests
from app.auth.tokens import TokenHolder, live_token_hashes, user_for_token
from app.chat.hub import chat_hub, close_user_bridges
from app.cluster import ClusterManager, current_cluster
from app.extensions import db, socketio
from app.models import User, secret_digest

SESSION_KEY = "socket_user"
SESSION_ROOM = "session:"
TOKEN_ROOM = "token:"
# The refusal while the database does not answer: the pages' clients try again later.
UNAVAILABLE = "unavailable: the database is not answering, try again in a few seconds"
NAMESPACES = ("/users", "/chat", "/demo")


def user_room(user_id: int) -> str:
    """The room every socket of one user is in, in every namespace."""
    return f"user:{user_id}"


def session_room(key_hash: str) -> str:
    """The room of the sockets opened with the login session whose key has SHA-256
    ``key_hash`` (``app.models.secret_digest``), in every namespace."""
    return f"{SESSION_ROOM}{key_hash}"


def token_room(token_hash: str) -> str:
    """The room of the sockets opened with the API token of SHA-256 ``token_hash``."""
    return f"{TOKEN_ROOM}{token_hash}"


def credential_room(room: object) -> bool:
    """Whether ``room`` is one of a login session's or an API token's (not the user's)."""
    return isinstance(room, str) and room.startswith((SESSION_ROOM, TOKEN_ROOM))


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
            join_room(session_room(secret_digest(user.login_key)))
        elif isinstance(auth, dict) and (user := user_for_token(auth.get("token"))):
            join_room(token_room(secret_digest(auth["token"])))
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


def _disconnect_room(room: str) -> int:
    """Close this process's Socket.IO connections in ``room``, every namespace."""
    manager = socketio.server.manager
    closed = 0
    for namespace in NAMESPACES:
        for sid, _ in list(manager.get_participants(namespace, room)):
            socketio.server.disconnect(sid, namespace=namespace, ignore_queue=True)
            closed += 1
    return closed


def disconnect_local(user_id: int) -> None:
    """Close every connection of ``user_id`` in this process: Socket.IO, every namespace,
    and the plain WebSockets of the chat bridge."""
    _disconnect_room(user_room(user_id))
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


def disconnect_session(key: str) -> None:
    """Close the connections opened with login session ``key`` (a logout) on every
    process: here at once, on the others through the message queue.

    While Redis is down the notice is lost: the other processes close them at their
    next ``close_ended_sessions`` instead.
    """
    key_hash = secret_digest(key)
    _disconnect_room(session_room(key_hash))
    if (cluster := current_cluster()) is not None:
        cluster.notify("disconnect_session", key_hash=key_hash)


def _opened(prefix: str) -> set[str]:
    """What follows ``prefix`` in the names of this process's rooms, every namespace."""
    return {room.removeprefix(prefix) for namespace in NAMESPACES
            for room in list(socketio.server.manager.rooms.get(namespace, {}))
            if isinstance(room, str) and room.startswith(prefix)}


def close_ended_sessions() -> int:
    """Close this process's sockets whose login session has ended, on any process (a
    logout, or its user's ``session_epoch`` moved on); returns how many.

    The message queue closes them at once (``disconnect_session``,
    ``disconnect_everywhere``); this sweep, run by the live feed every
    ``SESSION_SWEEP_SECONDS``, reads the database instead, so a logout on another
    process also closes them while the queue is down.
    """
    opened = _opened(SESSION_ROOM)
    if not opened:
        return 0
    ended = opened - live_digests(opened)
    db.session.rollback()  # end the read before any I/O towards the clients
    return sum(_disconnect_room(session_room(key_hash)) for key_hash in ended)


def close_revoked_tokens() -> int:
    """Close this process's connections (Socket.IO, and the chat's plain WebSockets)
    opened with an API token since revoked (by the API, the CLI, "log out everywhere
    else", on any process) or expired; returns how many. Run by the live feed with
    ``close_ended_sessions``."""
    hub = chat_hub()
    opened = _opened(TOKEN_ROOM) | (hub.token_hashes() if hub is not None else set())
    if not opened:
        return 0
    revoked = opened - live_token_hashes(opened)
    db.session.rollback()  # end the read before any I/O towards the clients
    closed = sum(_disconnect_room(token_room(token_hash)) for token_hash in revoked)
    return closed + (hub.close_tokens(revoked) if hub is not None and revoked else 0)


def listen_for_disconnects(cluster: ClusterManager) -> None:
    """Handle other processes' ``disconnect_everywhere`` and ``disconnect_session``."""
    cluster.on("disconnect_user", lambda notice: disconnect_local(int(notice["user_id"])))
    cluster.on("disconnect_session", lambda notice: _disconnect_room(
        session_room(str(notice["key_hash"]))))
