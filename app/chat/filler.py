"""The filling half of ``app.chat.relay.ChatRelay``: what a process missed of its streams,
read from the database (a gap, a queue outage, a sweep)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from app.chat import store
from app.chat.streams import envelope, private_parties
from app.extensions import db, socketio

if TYPE_CHECKING:
    from app.chat.relay import ChatRelay

log = logging.getLogger("app.realtime")
FILL_BATCH = 500


class StreamFiller:
    """The filler task of a ``ChatRelay`` (a mixin: it works on the relay's streams)."""

    def __init__(self) -> None:
        self.gaps: set[str] = set()
        self.wake = threading.Event()
        self.sweep_now = False
        self.sweep_seconds = 0.0  # from the app's config at start
        self.catchup_seconds = 1.0
        self.cluster: Any = None  # the ClusterManager, when there is a queue

    def _gap(self, key: str) -> None:
        self.gaps.add(key)
        self.wake.set()

    def recover(self) -> None:
        """The queue is back: sweep at once, new conversations included."""
        self.sweep_now = True
        self.wake.set()

    def _fill_forever(self: ChatRelay) -> None:
        assert self.app is not None
        next_sweep = time.monotonic()
        while True:
            self.wake.wait(self.catchup_seconds if not self._healthy()
                           else max(0.0, next_sweep - time.monotonic()))
            self.wake.clear()
            gaps, self.gaps = self.gaps, set()
            # While the queue is down: the heads of the streams followed here, every
            # round (one primary-key query); conversations new to this process, which
            # cost a scan of its users' received messages, once it is back.
            deep, self.sweep_now = self.sweep_now, False
            sweep = deep or not self._healthy() or time.monotonic() >= next_sweep
            if sweep:
                next_sweep = time.monotonic() + self.sweep_seconds
            with self.app.app_context():
                try:
                    self.fill(gaps, sweep=sweep, deep=deep)
                except Exception:  # noqa: BLE001 - the database may be away: next round
                    log.exception("chat: filling from the database failed")
                    self.gaps |= gaps
                finally:
                    db.session.remove()

    def _healthy(self) -> bool:
        return self.cluster is None or self.cluster.healthy

    def fill(self: ChatRelay, keys: Iterable[str], *, sweep: bool = False,
             deep: bool = False) -> None:
        """Deliver from the database what this process missed of ``keys`` (of every
        stream, for a sweep; of new conversations of its users too, for a deep one)."""
        keys = set(keys)
        if sweep:
            self._prune()
            if deep:
                with self.lock:
                    users = list(self.users)
                for key in store.conversations_of(users, received_only=True):
                    self._stream_for(key)
            self._settle()
            with self.lock:
                known = {k: s.last for k, s in self.streams.items() if s.last is not None}
            keys |= {k for k, head in store.heads(list(known)).items() if head > known[k]}
        for key in keys:
            while (stream := self.streams.get(key)) is not None and stream.last is not None:
                rows = store.after(key, stream.last, FILL_BATCH)
                envs = [envelope(m) for m in rows]
                db.session.rollback()
                delivered = []
                with stream.lock:
                    for env in envs:
                        message = env["message"]
                        new = message["seq"] > stream.last and message["id"] not in stream.recent
                        if new and self._deliver(stream, env):
                            delivered.append(message["id"])
                    self._drain(key, stream)
                self._mark_later(delivered)
                if len(rows) < FILL_BATCH:
                    break

    def _settle(self: ChatRelay) -> None:
        """Streams whose head a join or a connection failed to read (the database was
        away): start them from the head now, so that what comes later is delivered."""
        with self.lock:
            loading = {u for u, busy in self.users.items() if busy}
            unsettled = [k for k, s in self.streams.items() if s.last is None and not s.opening
                         and not loading & set(private_parties(k) or ())]
        heads = store.heads(unsettled)
        for key in unsettled:
            stream = self.streams.get(key)
            if stream is not None:
                with stream.lock:
                    if stream.last is None:
                        stream.last = heads.get(key, 0)
                        self._drain(key, stream)

    def _prune(self: ChatRelay) -> None:
        """Forget the users without a chat socket here, and the streams nobody here follows."""
        from app.auth.sockets import user_room

        manager = socketio.server.manager
        with self.lock:
            for user_id, loading in list(self.users.items()):
                if not loading and not any(True for _ in manager.get_participants(
                        self.namespace, user_room(user_id))):
                    del self.users[user_id]
            for key, stream in list(self.streams.items()):
                parties = private_parties(key)
                followed = (any(p in self.users for p in parties) if parties is not None
                            else bool(self.hub.users(key[2:])))
                if not followed and not stream.opening and stream.last is not None:
                    del self.streams[key]
