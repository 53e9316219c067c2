"""Chat across processes: each process delivers to its own sockets (app.chat.relay).

The process that stores a message publishes it as a ``chat`` notice; every other process
offers it to its relay, which delivers it to the room's sockets there (Socket.IO and plain
WebSockets) or to the private recipient's, and marks a private message delivered when it
reached one of them, so that it is not sent again on a later connection. When the queue
comes back after an outage, the relay fills what it missed from the database.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.chat.hub import NAMESPACE
from app.cluster import ClusterManager
from app.extensions import socketio


def listen_for_chat(app: Flask, cluster: ClusterManager) -> None:
    """Give the other processes' chat messages to this process's relay."""
    relay = socketio.server.namespace_handlers[NAMESPACE].relay
    relay.cluster = cluster
    relay.catchup_seconds = app.config["CHAT_CATCHUP_SECONDS"]
    relay.republish_seconds = app.config["CHAT_REPUBLISH_SECONDS"]

    def handle(notice: dict[str, Any]) -> None:
        relay.offer({key: notice[key] for key in ("stream", "recipient_id", "message")})

    cluster.on("chat", handle)
    cluster.on_recovered(relay.recover)
