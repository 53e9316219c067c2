"""Private messages across processes: the sender's process sees only its own sockets, so
each process that holds a chat socket of the recipient marks the message delivered (it
relayed the emit), and the recipient is not sent it again on a later connection."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import update

from app.chat.hub import NAMESPACE
from app.cluster import ClusterManager, current_cluster
from app.extensions import db, socketio
from app.models import ChatMessage, utcnow


def announce_private(message_id: int, recipient_id: int) -> None:
    """Tell the other processes a private message was emitted to ``recipient_id``'s room."""
    if (cluster := current_cluster()) is not None:
        cluster.notify("private", id=message_id, user_id=recipient_id)


def listen_for_privates(app: Flask, cluster: ClusterManager) -> None:
    """Mark another process's private message delivered when its recipient is here."""
    from app.auth.sockets import user_room

    def mark(message_id: int) -> None:
        with app.app_context():
            try:
                db.session.execute(
                    update(ChatMessage)
                    .where(ChatMessage.id == message_id, ChatMessage.delivered_at.is_(None))
                    .values(delivered_at=utcnow()))
                db.session.commit()
            finally:
                db.session.remove()

    def handle(notice: dict[str, Any]) -> None:
        room = user_room(int(notice["user_id"]))
        if any(True for _ in socketio.server.manager.get_participants(NAMESPACE, room)):
            socketio.start_background_task(mark, int(notice["id"]))

    cluster.on("private", handle)
