"""Several server processes on one Redis: Socket.IO's message queue, plus the app's own
notices on the same channel (logouts, presence changes, chat messages).

python-socketio's ``RedisManager`` relays emits, disconnects by sid and rooms; it ignores
messages whose ``method`` it does not know. ``ClusterManager`` adds methods of its own
(``"livecrud:<kind>"``), each handled by a function registered with :meth:`on`, in every
process but the sender.

It also keeps a slow or absent Redis off the request path: every publish is queued for
one background publisher (a handler never waits on Redis), Redis calls have bounded
timeouts, the listener resubscribes every ``retry_seconds`` (python-socketio's backs off
1+2+4+8 s) and a watcher pings Redis every ``ping_seconds``. ``healthy`` says whether
the queue works end to end; functions given to :meth:`on_recovered` run whenever it comes
back, since whatever was published meanwhile never reached this process.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.realtime.rooms import RoomIndex

log = logging.getLogger(__name__)
PREFIX = "livecrud:"
OUTBOX_SIZE = 10_000


class ClusterManager(RoomIndex, socketio.RedisManager):
    """The Redis client manager, with app notices to every other process."""

    def __init__(self, url: str, channel: str, *, timeout: float = 1.0,
                 ping_seconds: float = 1.0, retry_seconds: float = 1.0) -> None:
        # A dead connection is retried once at once; a timeout is not (the command
        # may still run when a hung Redis resumes: a retry would publish it twice).
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                   "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))}
        super().__init__(url, channel=channel, redis_options=options)
        self.timeout, self.ping_seconds, self.retry_seconds = timeout, ping_seconds, retry_seconds
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.recovered: list[Callable[[], None]] = []
        self.outbox: queue.Queue[tuple[dict[str, Any], float]] = queue.Queue(OUTBOX_SIZE)
        self.publishing = False
        self.listening = False  # subscribed to the channel now
        self.reachable = False  # the last ping answered
        self.down_since: float | None = time.monotonic()

    @property
    def healthy(self) -> bool:
        """Whether notices published now reach the other processes (as far as we know)."""
        return self.listening and self.reachable

    def initialize(self) -> None:
        super().initialize()
        self.publishing = True
        self.server.start_background_task(self._publisher)
        self.server.start_background_task(self._watch)

    def on_recovered(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (in a background task) each time the queue works again."""
        self.recovered.append(callback)

    def on(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call ``handler(message)`` for every ``kind`` notice another process publishes."""
        self.handlers[kind] = handler

    def notify(self, kind: str, **data: Any) -> None:
        """Publish a ``kind`` notice to every other process (at most once: none while
        Redis is down)."""
        self._publish({**data, "method": PREFIX + kind, "host_id": self.host_id})

    def notify_retrying(self, kind: str, max_age: float, **data: Any) -> None:
        """``notify``, tried again while Redis is down for up to ``max_age`` seconds;
        receivers must ignore a repeat (a timed-out publish may have gone through)."""
        self._publish({**data, "method": PREFIX + kind, "host_id": self.host_id},
                      retry_for=max_age)

    def _publish(self, data: dict[str, Any], retry_for: float = 0.0) -> None:
        """Queue for the publisher (before it runs, or when its queue is full: publish now)."""
        if self.publishing:
            try:
                self.outbox.put_nowait((data, time.monotonic() + retry_for))
                return
            except queue.Full:
                log.error("message queue: %d publishes waiting; publishing in the handler",
                          OUTBOX_SIZE)
        self._send(data)

    def _send(self, data: dict[str, Any]) -> bool:
        """One bounded attempt (a broken connection is reconnected once)."""
        try:
            if not self.connected:
                self._redis_connect()
            self.redis.publish(self.channel, self.json.dumps(data))
            return True
        except Exception as exc:  # noqa: BLE001 - any failure: Redis is not there
            self.connected = False
            log.warning("message queue: publish failed: %s", exc)
            return False

    def _publisher(self) -> None:
        """Publish queued messages in order; a retried one waits for Redis meanwhile."""
        while True:
            data, retry_until = self.outbox.get()
            while not self._send(data) and time.monotonic() < retry_until:
                time.sleep(self.retry_seconds)

    def _watch(self) -> None:
        """Ping Redis every ``ping_seconds`` with a client of its own."""
        client = redis.Redis.from_url(self.redis_url, **self.redis_options)
        while True:
            try:
                client.ping()
                reachable = True
            except Exception:  # noqa: BLE001 - unreachable, refused, timed out, hung
                reachable = False
            self._set_state(reachable=reachable)
            time.sleep(self.ping_seconds)

    def _set_state(self, *, reachable: bool | None = None, listening: bool | None = None) -> None:
        was = self.healthy
        if reachable is not None:
            self.reachable = reachable
        if listening is not None:
            self.listening = listening
        if was and not self.healthy:
            self.down_since = time.monotonic()
            log.warning("message queue: down (reachable=%s, subscribed=%s)",
                        self.reachable, self.listening)
        elif self.healthy and not was:
            down = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = None
            log.warning("message queue: back after %.1f s", down)
            for callback in self.recovered:
                self.server.start_background_task(callback)

    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        """python-socketio's listener, resubscribing every ``retry_seconds`` instead of
        backing off to 60 s. Its own client has no read timeout (an idle channel is
        normal); a ping watcher finds a hung Redis."""
        options = {**self.redis_options, "socket_timeout": None}
        while True:
            pubsub = redis.Redis.from_url(self.redis_url, **options).pubsub(
                ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self._set_state(listening=True)
                yield from pubsub.listen()
            except Exception as exc:  # noqa: BLE001 - reconnect whatever went wrong
                log.warning("message queue: cannot receive (%s); retrying in %g s",
                            exc, self.retry_seconds)
            finally:
                pubsub.close()
            self._set_state(listening=False)
            time.sleep(self.retry_seconds)

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


def cluster_manager(url: str | None, channel: str, **options: float) -> ClusterManager | None:
    """The client manager for a Redis ``SOCKETIO_MESSAGE_QUEUE`` (None: no queue, or one
    that Flask-SocketIO handles itself, without the app's notices); ``options`` are
    ``ClusterManager``'s timeouts."""
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return ClusterManager(url, channel, **options)


def current_cluster() -> ClusterManager | None:
    """This process's cluster manager, if it runs with a Redis message queue."""
    from app.extensions import socketio as flask_socketio

    manager = getattr(getattr(flask_socketio, "server", None), "manager", None)
    return manager if isinstance(manager, ClusterManager) else None
