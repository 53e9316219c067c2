"""Presence across processes: who views the users table and who edits which user, on
every process sharing one Redis.

Each process keeps its own viewers and editors in a Redis key that expires
(``<channel>:presence:<host id>``, listed in the set ``<channel>:presence``), rewrites it
when they change and every ``PRESENCE_REFRESH_SECONDS``, and tells the others through the
message queue that it did. Every process reads the others' entries on such a notice and
at each refresh, so a process that dies (its key expires after three refreshes) drops
out within four.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask

from app.cluster import ClusterManager
from app.extensions import socketio

log = logging.getLogger(__name__)
Payload = dict[str, Any]  # {"viewers": [name, ...], "editing": {"<id>": [name, ...]}}
EMPTY: Payload = {"viewers": [], "editing": {}}


def merge(payloads: list[Payload]) -> Payload:
    """One presence payload listing everyone of ``payloads``, sorted as the event is."""
    viewers: set[str] = set()
    editing: dict[int, set[str]] = {}
    for payload in payloads:
        viewers.update(payload.get("viewers", ()))
        for user_id, names in payload.get("editing", {}).items():
            editing.setdefault(int(user_id), set()).update(names)
    return {"viewers": sorted(viewers),
            "editing": {str(k): sorted(v) for k, v in sorted(editing.items())}}


class ClusterPresence:
    """This process's presence entry in Redis, and the other processes' entries."""

    def __init__(self, app: Flask, cluster: ClusterManager,
                 on_change: Callable[[], None]) -> None:
        self.redis = redis.Redis.from_url(app.config["SOCKETIO_MESSAGE_QUEUE"],
                                          socket_timeout=2, socket_connect_timeout=2)
        self.cluster = cluster
        self.on_change = on_change
        self.refresh = app.config["PRESENCE_REFRESH_SECONDS"]
        self.index = f"{cluster.channel}:presence"
        self.key = f"{self.index}:{cluster.host_id}"
        self.local: Payload = EMPTY
        self.others: Payload = EMPTY
        self._written: Payload | None = None  # as last written to Redis
        self._read_at = 0.0  # when the others' entries were last read
        self._wake = socketio.server.eio.create_event()
        self._task = None
        self._down = False
        cluster.on("presence", lambda notice: self._wake.set())

    def update(self, local: Payload) -> Payload:
        """Record this process's presence; everyone's (the others' as last read)."""
        if local != self.local:
            self.local = local
            self._wake.set()
        self.start()
        return merge([local, self.others])

    def start(self) -> None:
        """Start the background task (once per process)."""
        if self._task is None:
            self._task = socketio.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.refresh)
            self._wake.clear()
            self.sync()

    def sync(self) -> None:
        """Write this process's entry (telling the others when it changed) and read
        theirs; broadcast when anyone's changed."""
        try:
            local = self.local
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.key, json.dumps(local), ex=max(1, round(3 * self.refresh)))
            pipe.sadd(self.index, self.cluster.host_id)
            pipe.smembers(self.index)
            hosts = sorted(h.decode() for h in pipe.execute()[2]
                           if h.decode() != self.cluster.host_id)
            if local != self._written:
                self._written = local
                self.cluster.notify("presence")
            entries = self.redis.mget([f"{self.index}:{h}" for h in hosts]) if hosts else []
            gone = [h for h, entry in zip(hosts, entries, strict=True) if entry is None]
            if gone:
                self.redis.srem(self.index, *gone)
            others = merge([json.loads(e) for e in entries if e is not None])
            self._read_at = time.monotonic()
            if self._down:
                self._down = False
                log.warning("presence: Redis answers again")
        except (redis.RedisError, ValueError) as error:
            if not self._down:
                self._down = True
                log.error("presence: Redis unavailable (%s); listing this process only "
                          "once the others' entries are stale", type(error).__name__)
            self._written = None  # write it again once Redis is back
            if time.monotonic() - self._read_at < 3 * self.refresh:
                return
            others = EMPTY
        if others != self.others:
            self.others = others
            self.on_change()
