"""The subscribe/join protocol of ``/users``: how a client gets its acknowledgement and
then joins the plain change stream or a live view between two of the feed's batches.

Every acknowledgement is read from the database *outside* the feed's lock (the lock
the follower holds while it emits), as of one cursor C; the client joins after its ack
is on the wire, and is first sent whatever the feed emitted after C. Only that short
tail is read under the lock, so a subscriber never holds up the live table.
"""

from __future__ import annotations

from typing import Any

from app.extensions import db, socketio
from app.live.changelog import (
    change_payload,
    consistent_read,
    current_cursor,
    every_user,
    pruned_through,
    read_changes,
)
from app.live.feed import BATCH_LIMIT, ROOM, VIEWS_ROOM, Feed
from app.live.views import NAMESPACE, Page
from app.realtime.acks import after_ack
from app.users.counts import table_counts
from app.users.listing import Listing


class SubscribeError(ValueError):
    """A subscription the contract refuses (the message goes to the client)."""


class Subscriptions:
    """Subscribing to ``feed``: the plain change stream, an edit form's join, a view."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    # --- the plain change stream ------------------------------------------------------------

    def subscribe(self, sid: str, since: int | None) -> dict[str, Any]:
        """The acknowledgement for ``sid``'s subscription; it joins once the ack is sent.

        ``{"cursor", "changes"}`` replays what came after ``since``; a null, pruned or
        future ``since``, or a replay longer than ``LIVE_SNAPSHOT_MAX_ROWS`` changes,
        gets ``{"cursor", "rows"}``, a snapshot as of that cursor, while the table holds
        no more users than that (else ``SubscribeError``, and ``sid`` keeps what it
        followed). From then on it receives every change after that cursor, exactly once.
        """
        limit = self.feed.app.config["LIVE_SNAPSHOT_MAX_ROWS"]
        with consistent_read():
            cursor = current_cursor()
            replayable = since is not None and pruned_through() <= since <= cursor
            if replayable and cursor - since <= limit:
                ack = {"cursor": cursor,
                       "changes": [change_payload(c) for c in read_changes(since, upto=cursor)]}
            elif table_counts()["total"] > limit:
                raise SubscribeError(
                    f"the table holds more than {limit} users, too many for a full "
                    "snapshot: subscribe with a view ({\"view\": {...}}) instead")
            else:
                ack = {"cursor": cursor, "rows": every_user()}
        with self.feed.lock:  # out of its view and of the stream until the ack is out
            self._leave(sid)
        after_ack(lambda: self.join(sid, cursor))
        return ack

    def join(self, sid: str, cursor: int) -> None:
        """Add ``sid`` to the plain stream's room; first send it every change after
        ``cursor``. ``sid`` is not in the room yet, so nothing can overtake what it is
        sent: a long tail goes out in batches outside the lock, the last one under it."""
        feed = self.feed
        with feed.app.app_context():
            try:
                while feed.head() - cursor > BATCH_LIMIT and self._connected(sid):
                    changes = read_changes(cursor, upto=feed.head(), limit=BATCH_LIMIT)
                    db.session.rollback()
                    if not changes:
                        break  # pruned meanwhile: what is left comes under the lock
                    self._send(sid, changes)
                    cursor = changes[-1].cursor
                with feed.lock:
                    if not self._connected(sid):
                        return
                    if feed.head() < cursor:
                        feed.catch_up(cursor)  # the room gets up to the ack's cursor first
                    if feed.head() > cursor:
                        self._send(sid, read_changes(cursor, upto=feed.head()))
                    db.session.rollback()
                    socketio.server.enter_room(sid, ROOM, namespace=NAMESPACE)
            finally:
                db.session.remove()

    @staticmethod
    def _send(sid: str, changes: list) -> None:
        if changes:
            socketio.server.emit("changes", [change_payload(c) for c in changes], to=sid,
                                 namespace=NAMESPACE, ignore_queue=True)

    @staticmethod
    def _connected(sid: str) -> bool:
        return socketio.server.manager.is_connected(sid, NAMESPACE)

    # --- live views ----------------------------------------------------------------------------

    def subscribe_view(self, sid: str, listing: Listing) -> dict[str, Any]:
        """The acknowledgement of a view: its page and total; the client joins the
        view's room once the ack is sent, and is sent a ``view`` event on every change.

        The page is read from the database outside the lock, unless another subscriber
        already follows the same view: then it is answered from memory.
        """
        feed, views = self.feed, self.feed.views
        while True:
            read = None if listing in views.pages else self._read_page(listing)
            with feed.lock:
                if read is None and listing not in views.pages:
                    continue  # its last subscriber left meanwhile: read it after all
                socketio.server.leave_room(sid, ROOM, namespace=NAMESPACE)
                page = views.add(sid, listing, read, feed.head())
                cursor = page.cursor if page.stale else max(page.cursor, feed.head())
                ack = {**page.state(cursor), "view": listing.as_dict()}
                serial = page.serial
                if page.stale:
                    feed.wake()
                break
        ack["counts"] = table_counts()
        db.session.rollback()

        def join() -> None:
            with feed.lock:
                views.join(sid, page, serial)
                socketio.server.enter_room(sid, VIEWS_ROOM, namespace=NAMESPACE)

        after_ack(join)
        return ack

    @staticmethod
    def _read_page(listing: Listing) -> Page:
        """The page and its total as of one cursor, from one snapshot."""
        with consistent_read():
            cursor = current_cursor()
            total = listing.count()
            users = listing.payloads(total=total)
        return Page(listing, room="", cursor=cursor, total=total,
                    ids=[u["id"] for u in users], rows={u["id"]: u for u in users})

    # --- leaving ---------------------------------------------------------------------------------

    def leave(self, sid: str) -> None:
        """``sid`` disconnected: it follows no view any more."""
        with self.feed.lock:
            self._leave(sid)

    def _leave(self, sid: str) -> None:
        """Out of its view and of every room of the feed (under the lock)."""
        self.feed.views.remove(sid)
        for room in (ROOM, VIEWS_ROOM):
            socketio.server.leave_room(sid, room, namespace=NAMESPACE)
