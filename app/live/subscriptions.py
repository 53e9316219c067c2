"""The subscribe/join protocol of ``/users``: how a client gets its acknowledgement and
then joins the plain change stream or a live view between two of the feed's batches.

Every acknowledgement is read from the database *outside* the feed's lock (the lock
the follower holds while it emits), as of one cursor C; the client joins after its ack
is on the wire, and is first sent whatever the feed emitted after C. Only that short
tail is read under the lock, so a subscriber never holds up the live table.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
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
from app.live.shared_reads import SharedAcks, SingleFlight
from app.live.views import NAMESPACE, Page
from app.models import User
from app.realtime.acks import after_ack
from app.users.counts import table_counts
from app.users.listing import Listing

log = logging.getLogger(__name__)


class SubscribeError(ValueError):
    """A subscription the contract refuses (the message goes to the client)."""


class Subscriptions:
    """Subscribing to ``feed``: the plain change stream, an edit form's watch, a view.

    Each successful subscription of a connection gets a number (``_serials``): a join
    still pending for an earlier one finds it replaced and does nothing, so two quick
    subscribes never put a connection in a room twice or in two rooms.
    """

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self._serials: dict[str, int] = {}  # sid -> its latest subscription's number
        self._numbers = itertools.count(1)
        self.acks = SharedAcks(feed.app.config["LIVE_SNAPSHOT_MAX_ROWS"])
        self.page_reads: SingleFlight[tuple[int, int, list[dict[str, Any]]]] = SingleFlight()

    # --- the plain change stream ------------------------------------------------------------

    def subscribe(self, sid: str, since: int | None) -> dict[str, Any]:
        """The acknowledgement for ``sid``'s subscription; it joins once the ack is sent.

        ``{"cursor", "changes"}`` replays what came after ``since``; a null, pruned or
        future ``since``, or a replay longer than ``LIVE_SNAPSHOT_MAX_ROWS`` changes,
        gets ``{"cursor", "rows"}``, a snapshot as of that cursor, while the table holds
        no more users than that (else ``SubscribeError``, and ``sid`` keeps what it
        followed). From then on it receives every change after that cursor, exactly once.
        Subscribers asking for the same ``since`` together share one read (``acks``).
        """
        limit = self.feed.app.config["LIVE_SNAPSHOT_MAX_ROWS"]

        def read() -> tuple[dict[str, Any], int]:
            with consistent_read():
                cursor = current_cursor()
                replayable = since is not None and pruned_through() <= since <= cursor
                if replayable and cursor - since <= limit:
                    return {"cursor": cursor, "changes": [
                        change_payload(c) for c in read_changes(since, upto=cursor)]}, cursor
                if table_counts()["total"] > limit:
                    raise SubscribeError(
                        f"the table holds more than {limit} users, too many for a full "
                        "snapshot: subscribe with a view ({\"view\": {...}}) instead")
                return {"cursor": cursor, "rows": every_user()}, cursor

        return self._replace(
            sid, lambda sent: self.acks.get(since, self.feed.head(), read, floor=sent))

    def watch(self, sid: str, user_id: int) -> dict[str, Any]:
        """An edit form's subscription: ``{"cursor", "row"}``, the user (or None) as of
        that cursor; every change after it follows, as for ``subscribe``."""
        def read(_sent: int) -> tuple[dict[str, Any], int]:  # never older: read now
            with consistent_read():  # the row and the cursor as of the same moment
                cursor = current_cursor()
                user = db.session.get(User, user_id) if 0 < user_id < 2**31 else None
                return {"cursor": cursor, "row": user.to_dict() if user else None}, cursor

        return self._replace(sid, read)

    def _replace(self, sid: str, read: Callable[[int], tuple[dict[str, Any], int]]
                 ) -> dict[str, Any]:
        """``read(sent)`` the new subscription's ack and cursor with ``sid`` out of the
        plain room (no broadcast after the ack's cursor may reach it before the ack);
        ``sent`` is the cursor up to which the room sent it changes (0: it was not in
        the room), which the ack must not be older than. Then it follows only the new
        subscription, from its join on; if ``read`` raises, it goes on following what it
        followed."""
        feed = self.feed
        with feed.lock:
            rejoin = ROOM in socketio.server.rooms(sid, namespace=NAMESPACE)
            if rejoin:
                socketio.server.leave_room(sid, ROOM, namespace=NAMESPACE)
            left_at, serial = feed.head(), self._serials.get(sid)
        try:
            ack, cursor = read(left_at if rejoin else 0)
        except Exception:
            if rejoin and serial is not None:
                self.join(sid, left_at, serial)
            raise
        with feed.lock:
            serial = self._begin(sid)
            feed.views.remove(sid)
            socketio.server.leave_room(sid, VIEWS_ROOM, namespace=NAMESPACE)
        after_ack(lambda: self.join(sid, cursor, serial))
        return ack

    def join(self, sid: str, cursor: int, serial: int) -> None:
        """Add ``sid`` to the plain stream's room, first sending it every change after
        ``cursor``, unless a later subscription replaced this one. ``sid`` is not in the
        room yet, so nothing overtakes what it is sent: a long tail goes out in batches
        outside the lock, at most one batch under it. A failure closes the connection:
        the client reconnects and subscribes from its last cursor."""
        feed = self.feed
        with feed.app.app_context():
            try:
                while True:
                    while self._current(sid, serial) and feed.head() - cursor > BATCH_LIMIT:
                        changes = read_changes(cursor, upto=feed.head(), limit=BATCH_LIMIT)
                        db.session.rollback()
                        if not changes:
                            break  # pruned meanwhile
                        self._send(sid, changes)
                        cursor = changes[-1].cursor
                    with feed.lock:
                        if not self._current(sid, serial):
                            return
                        if feed.head() < cursor:
                            feed.catch_up(cursor)  # the room gets up to the ack first
                        # Usually nothing came after the ack: then no query (and no
                        # connection) under the lock while a crowd reconnects.
                        head = feed.head()
                        tail = (read_changes(cursor, upto=head, limit=BATCH_LIMIT + 1)
                                if head > cursor else [])
                        db.session.rollback()
                        if len(tail) <= BATCH_LIMIT:
                            self._send(sid, tail)
                            socketio.server.enter_room(sid, ROOM, namespace=NAMESPACE)
                            return
                    # A bulk write went by meanwhile: send it outside the lock first.
            except Exception:
                log.exception("live feed: %s could not join; closing it to resubscribe", sid)
                socketio.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
            finally:
                db.session.remove()

    def _begin(self, sid: str) -> int:
        """Number a new subscription of ``sid`` (under the lock)."""
        serial = self._serials[sid] = next(self._numbers)
        return serial

    def _current(self, sid: str, serial: int) -> bool:
        """Whether ``sid`` is connected and ``serial`` is still its latest subscription."""
        return (self._serials.get(sid) == serial
                and socketio.server.manager.is_connected(sid, NAMESPACE))

    @staticmethod
    def _send(sid: str, changes: list) -> None:
        if changes:
            socketio.server.emit("changes", [change_payload(c) for c in changes], to=sid,
                                 namespace=NAMESPACE, ignore_queue=True)

    # --- live views ----------------------------------------------------------------------------

    def subscribe_view(self, sid: str, listing: Listing) -> dict[str, Any]:
        """The acknowledgement of a view: its page and total; the client joins the
        view's room once the ack is sent, and is sent a ``view`` event on every change.

        The page is read from the database outside the lock, unless another subscriber
        already follows the same view: then it is answered from memory.
        """
        feed, views = self.feed, self.feed.views
        counts = table_counts()
        db.session.rollback()
        while True:
            read = None if listing in views.pages else self._read_page(listing)
            with feed.lock:
                if read is None and listing not in views.pages:
                    continue  # its last subscriber left meanwhile: read it after all
                socketio.server.leave_room(sid, ROOM, namespace=NAMESPACE)
                page = views.add(sid, listing, read, feed.head())
                cursor = page.cursor if page.stale else max(page.cursor, feed.head())
                ack = {**page.state(cursor), "view": listing.as_dict(), "counts": counts}
                page_serial, serial = page.serial, self._begin(sid)
                if page.stale:
                    feed.wake()
                break

        def join() -> None:
            with feed.lock:
                if self._current(sid, serial):
                    views.join(sid, page, page_serial)
                    socketio.server.enter_room(sid, VIEWS_ROOM, namespace=NAMESPACE)

        after_ack(join)
        return ack

    def _read_page(self, listing: Listing) -> Page:
        """The page and its total as of one cursor, from one snapshot; subscribers of
        the same view while it is being read share the read (each gets its own Page)."""
        def read() -> tuple[int, int, list[dict[str, Any]]]:
            with consistent_read():
                cursor = current_cursor()
                total = listing.count()
                return cursor, total, listing.payloads(total=total)

        cursor, total, users = self.page_reads.get(listing, read)
        return Page(listing, room="", cursor=cursor, total=total,
                    ids=[u["id"] for u in users], rows={u["id"]: u for u in users})

    # --- leaving ---------------------------------------------------------------------------------

    def leave(self, sid: str) -> None:
        """``sid`` disconnected: it follows nothing any more."""
        with self.feed.lock:
            self._serials.pop(sid, None)
            self.feed.views.remove(sid)
