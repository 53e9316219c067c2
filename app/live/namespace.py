"""The ``/users`` namespace: the live users table (see docs/live.md and the contract)."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app, request

from app.auth.sockets import authenticate, socket_user
from app.extensions import db
from app.live.feed import NAMESPACE, ROOM, VIEWS_ROOM, Feed
from app.live.presence import ClusterPresence
from app.live.subscriptions import SubscribeError, Subscriptions
from app.realtime import fanout
from app.realtime.acks import after_ack
from app.realtime.errors import reject
from app.realtime.namespace import RealtimeNamespace
from app.realtime.ratelimit import RateLimiter
from app.users.listing import Listing, ListingError


class UsersNamespace(RealtimeNamespace):
    """Subscriptions to the change feed, and who is viewing or editing what."""

    def __init__(self, feed: Feed, namespace: str = NAMESPACE) -> None:
        super().__init__(namespace)
        self.subscriptions = Subscriptions(feed)
        config = feed.app.config
        self.subscribes = RateLimiter(config["LIVE_SUBSCRIBE_RATE"], config["LIVE_SUBSCRIBE_BURST"])
        # sid -> username of dashboard viewers; sid -> (username, user id) of edit forms.
        self.viewers: dict[str, str] = {}
        self.editors: dict[str, tuple[str, int]] = {}
        self._presence_lock = threading.Lock()  # handlers run in threads under `flask run`
        self._presence: dict[str, Any] | None = None  # as last sent to the room
        self._presence_sent_at = 0.0
        self._newcomers: set[str] = set()  # to be sent the presence even if unchanged
        self._flush_due = False  # a broadcast is scheduled
        self._presence_sending = False  # one sender at a time
        self._presence_again = False  # changes came while it sent
        self.presence_cost = config["PRESENCE_BROADCAST_COST"]
        # With a Redis message queue: the other processes' viewers and editors too.
        self.cluster: ClusterPresence | None = None

    def on_connect(self, auth: Any = None) -> None:
        """A browser (login session) or a token holder connects; anyone else is refused."""
        authenticate(auth)
        db.session.rollback()

    def on_disconnect(self, reason: Any = None) -> None:
        """A client went away: it leaves its view and the presence lists."""
        self.subscriptions.leave(request.sid)
        self.subscribes.forget(request.sid)
        with self._presence_lock:
            viewed = self.viewers.pop(request.sid, None)
            edited = self.editors.pop(request.sid, None)
        if viewed or edited:
            self._broadcast_presence()

    def on_subscribe(self, data: Any = None) -> dict[str, Any] | None:
        """Client -> server ``{"since": C|null}`` (the ack is a snapshot or the changes
        after C) or ``{"view": {...}}`` (the ack is the page; ``view`` events follow)."""
        if not self.subscribes.allow(request.sid):
            return reject(self.subscribes.message("subscribes"))
        if not isinstance(data, dict):
            return reject('payload must be an object like {"since": null} or {"view": {}}')
        try:
            if "view" in data:
                listing = Listing.from_view(
                    data["view"], max_per_page=current_app.config["API_MAX_PER_PAGE"])
                ack = self.subscriptions.subscribe_view(request.sid, listing)
            else:
                since = data.get("since")
                if since is not None and (type(since) is not int or since < 0):
                    return reject("since must be null or a non-negative integer")
                ack = self.subscriptions.subscribe(request.sid, since)
        except ListingError as exc:
            return reject(f"bad view: {exc}")
        except SubscribeError as exc:
            return reject(str(exc))
        sid = request.sid
        with self._presence_lock:  # a subscribe replaces a watch (one or the other)
            self.editors.pop(sid, None)
            self.viewers[sid] = socket_user()["username"]
        after_ack(lambda: self._broadcast_presence(newcomer=sid))  # after the join
        return ack

    def on_watch(self, data: Any = None) -> dict[str, Any] | None:
        """An edit form ``{"id": N}`` follows changes from now; the ack has the user as it is."""
        if not isinstance(data, dict) or type(data.get("id")) is not int:
            return reject('payload must be an object like {"id": 42}')
        sid = request.sid
        ack = self.subscriptions.watch(sid, data["id"])
        with self._presence_lock:  # a watch replaces a subscribe
            self.viewers.pop(sid, None)
            self.editors[sid] = (socket_user()["username"], data["id"])
        after_ack(lambda: self._broadcast_presence(newcomer=sid))
        return ack

    def on_latency(self, data: Any = None) -> dict[str, Any]:
        """Client -> server with an ack: the client measures the round trip."""
        return {"ok": True}

    def _broadcast_presence(self, newcomer: str | None = None) -> None:
        """Send the room who is viewing and editing, when that changed; a newcomer gets
        it anyway. (A thousand tabs of one user joining is one broadcast, not a
        thousand to a thousand.)

        After a broadcast, changes wait and go out together, spaced like the change
        frames by what a broadcast to everyone costs (``PRESENCE_BROADCAST_COST`` x the
        connections): a crowd of users arriving at once would otherwise send each one's
        arrival to all the others (N² events). The first change after a quiet moment
        goes out at once. One sender at a time, outside the lock: a send can close a
        dead connection, whose disconnect handler comes back here.
        """
        with self._presence_lock:
            if newcomer:
                self._newcomers.add(newcomer)
            if self._presence_sending:
                self._presence_again = True  # the sender schedules another round
                return
            if self._flush_due:
                return  # goes out with the broadcast already due
            wait = self._presence_sent_at + self._presence_spacing() - time.monotonic()
            if wait > 0:
                self._flush_due = True
                self.socketio.start_background_task(self._flush_presence_later, wait)
                return
            self._presence_sending = True
        self._send_presence()

    def _presence_spacing(self) -> float:
        audience = len(self.viewers) + len(self.editors)
        return audience * self.presence_cost

    def _flush_presence_later(self, wait: float) -> None:
        self.socketio.sleep(wait)
        with self._presence_lock:
            self._flush_due = False
            if self._presence_sending:
                self._presence_again = True
                return
            self._presence_sending = True
        self._send_presence()

    def _send_presence(self) -> None:
        """Send the presence (the caller set ``_presence_sending``)."""
        try:
            with self._presence_lock:
                newcomers, self._newcomers = self._newcomers, set()
                editing: dict[int, set[str]] = {}
                for username, user_id in self.editors.values():
                    editing.setdefault(user_id, set()).add(username)
                payload = {
                    "viewers": sorted(set(self.viewers.values())),
                    "editing": {str(k): sorted(v) for k, v in sorted(editing.items())},
                }
                if self.cluster is not None:
                    payload = self.cluster.update(payload)
            # Every process sends its own clients the cluster's presence.
            if payload != self._presence:
                for room in (ROOM, VIEWS_ROOM):  # no connection is in both
                    fanout.emit(self.socketio.server, "presence", payload, room,
                                self.namespace)
                self._presence, self._presence_sent_at = payload, time.monotonic()
            elif newcomers:
                self.socketio.server.emit("presence", payload, to=sorted(newcomers),
                                          namespace=self.namespace, ignore_queue=True)
        finally:
            with self._presence_lock:
                self._presence_sending = False
                again, self._presence_again = self._presence_again, False
        if again:
            self._broadcast_presence()
