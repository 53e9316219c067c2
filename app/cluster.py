"""Several server processes on one Redis: Socket.IO's message queue, plus the app's own
notices on the same channel (logouts, presence changes).

python-socketio's ``RedisManager`` relays emits, disconnects by sid and rooms; it ignores
messages whose ``method`` it does not know. ``ClusterManager`` adds methods of its own
(``"livecrud:<kind>"``), each handled by a function registered with :meth:`on`, in every
process but the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import socketio

log = logging.getLogger(__name__)
PREFIX = "livecrud:"


class ClusterManager(socketio.RedisManager):
    """The Redis client manager, with app notices to every other process."""

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel)
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}

    def on(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call ``handler(message)`` for every ``kind`` notice another process publishes."""
        self.handlers[kind] = handler

    def notify(self, kind: str, **data: Any) -> None:
        """Publish a ``kind`` notice to every other process (at most once: none while
        Redis is down)."""
        self._publish({**data, "method": PREFIX + kind, "host_id": self.host_id})

    def _listen(self) -> Iterator[Any]:
        """Socket.IO's messages, after taking out (and handling) the app's notices."""
        marker = f'"{PREFIX}'.encode()
        for message in super()._listen():
            if marker not in message:
                yield message
                continue
            try:
                data = self.json.loads(message)
                method = data["method"]
            except (ValueError, TypeError, KeyError):
                yield message
                continue
            if not method.startswith(PREFIX):  # the marker was inside an emit's data
                yield data
                continue
            handler = self.handlers.get(method.removeprefix(PREFIX))
            if handler is None or data.get("host_id") == self.host_id:
                continue
            try:
                handler(data)
            except Exception:  # noqa: BLE001 - one bad notice must not end the listener
                log.exception("cluster notice %s failed", method)


def cluster_manager(url: str | None, channel: str) -> ClusterManager | None:
    """The client manager for a Redis ``SOCKETIO_MESSAGE_QUEUE`` (None: no queue, or one
    that Flask-SocketIO handles itself, without the app's notices)."""
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return ClusterManager(url, channel)


def current_cluster() -> ClusterManager | None:
    """This process's cluster manager, if it runs with a Redis message queue."""
    from app.extensions import socketio as flask_socketio

    manager = getattr(getattr(flask_socketio, "server", None), "manager", None)
    return manager if isinstance(manager, ClusterManager) else None
