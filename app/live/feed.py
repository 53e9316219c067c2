"""The follower of the change log (the subscribe/join protocol is ``subscriptions``).

One ``Feed`` per process follows ``user_changes`` (written by the database triggers,
whoever the writer) and emits every new change, in cursor order, to the Socket.IO
clients of *this* process that subscribed to the plain change stream, and keeps the
pages of the live views (``app.live.views``) exact. Changes committed in this process wake it
at once; other writers are seen by polling, or at once through LISTEN/NOTIFY on
PostgreSQL (while that connection is up, polling only backs it up, every
``LIVE_LISTEN_POLL_INTERVAL``). Changes arriving within ``LIVE_BATCH_WINDOW`` go out as
one frame.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from flask import Flask, has_app_context
from sqlalchemy.exc import DBAPIError

from app.auth.sessions import prune_sessions
from app.auth.sockets import (
    close_ended_sessions,
    close_revoked_tokens,
    disconnect_local,
    online_user_ids,
    user_room,
)
from app.extensions import db, socketio
from app.live.changelog import (
    change_payload,
    consistent_read,
    count_changes,
    current_cursor,
    prune,
    read_changes,
    read_changes_of,
)
from app.live.views import NAMESPACE, ViewRegistry, diff, plan_reads
from app.models import user_payload
from app.realtime import fanout
from app.users.counts import table_counts

log = logging.getLogger(__name__)

ROOM = "feed"  # subscribers of the plain change stream
VIEWS_ROOM = "views"  # every view subscriber: counters and the activity list
BATCH_LIMIT = 500
RECENT = 8


def _backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: 0.5, 1, 2, 4, then 5."""
    return min(0.25 * 2**failures, 5.0)


def _reason(exc: Exception) -> str:
    """The first line of what the database driver said (or of the exception)."""
    return str(getattr(exc, "orig", None) or exc).strip().split("\n", 1)[0]


class Feed:
    """The per-process follower of the change log (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        # Held while emitting and while a client subscribes, so a subscriber joins
        # the room exactly between two emitted batches: nothing lost, nothing twice.
        # Never held while waiting for a database connection by a subscriber.
        self.lock = threading.RLock()
        self.cursor: int | None = None
        self.views = ViewRegistry()
        self._wake = threading.Event()
        self._listening = False  # the LISTEN connection is up: NOTIFY wakes the feed
        self._unheard = 0  # backup polls in a row that found changes no NOTIFY announced
        self._start_lock = threading.Lock()
        self._started = False
        self._last_prune = 0.0
        self._unannounced = 0  # changes not yet counted in a ``counts`` event
        self._recent: list[dict[str, Any]] = []  # the last of them

    # --- the follower task -------------------------------------------------------------

    def start(self) -> None:
        """Start the follower (and the PostgreSQL listener) once per process.

        Called at start-up by the server (``manage.py run``, gunicorn), and by every
        connection (the first one starts it under ``flask run``). The head is read on
        the caller's own session, never while holding a lock, so a connection stampede
        cannot keep it from starting.
        """
        if self.cursor is None and has_app_context():
            self.head()
        with self._start_lock:
            if self._started or not self.app.config["LIVE_FEED_ENABLED"]:
                return  # tests drive poll_once() themselves
            self._started = True
        socketio.start_background_task(self._run)
        if self.app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            socketio.start_background_task(self._listen)

    def wake(self) -> None:
        """A change was committed: look for it now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        config = self.app.config
        sent_at = counted_at = swept_at = 0.0
        failures = 0  # in a row: an outage is logged when it starts and when it ends
        while True:
            woken = self._wake.wait(timeout=self._idle_wait(sent_at, swept_at))
            self._wake.clear()
            # Let the other changes of a burst arrive and go out in the same frame. A
            # lone change leaves after the short batch window; in a burst, frames are
            # spaced by what one fan-out to every subscriber costs, so sending never
            # falls behind and a burst becomes fewer, larger frames.
            wait = config["LIVE_BATCH_WINDOW"]
            if time.monotonic() - sent_at < config["LIVE_MAX_FRAME_SPACING"]:  # a burst
                spacing = min(self._subscribers() * config["LIVE_FRAME_COST"],
                              config["LIVE_MAX_FRAME_SPACING"])
                wait = max(wait, sent_at + spacing - time.monotonic())
            socketio.sleep(wait)
            with self.app.app_context():
                try:
                    started = time.monotonic()
                    if self.poll_once():
                        sent_at = started
                        if not woken and not self._wake.is_set():
                            self._unannounced_changes()
                    # The counters follow the views' events once those are out (a quiet
                    # moment), or every LIVE_COUNTS_INTERVAL during a burst.
                    now = time.monotonic()
                    if (now - sent_at >= config["LIVE_MAX_FRAME_SPACING"]
                            or now - counted_at >= config["LIVE_COUNTS_INTERVAL"]):
                        self.announce_counts()
                        counted_at = now
                    if now - swept_at >= config["SESSION_SWEEP_SECONDS"]:
                        # Logouts and revoked tokens on any process (or the CLI), queue
                        # or not.
                        close_ended_sessions()
                        close_revoked_tokens()
                        swept_at = now
                    self._maybe_prune()
                    if failures:
                        log.warning("live feed: resumed after %d failed polls", failures)
                        failures = 0
                except Exception as exc:  # keep following after a database hiccup
                    failures += 1
                    if failures == 1:  # a traceback for anything but the database's errors
                        log.error("live feed: poll failed (%s); retrying with backoff",
                                  _reason(exc), exc_info=not isinstance(exc, DBAPIError))
                    socketio.sleep(_backoff(failures))
                finally:
                    db.session.remove()

    def _unannounced_changes(self) -> None:
        """A backup poll found changes that no NOTIFY announced. Twice in a row (once
        may be a notification on its way), notifications are not arriving, yet the
        connection lives (a proxy in transaction-pooling mode, a listener left on a
        demoted server): poll every LIVE_POLL_INTERVAL until one arrives."""
        if not self._listening:
            return
        self._unheard += 1
        if self._unheard == 2:
            log.warning("live feed: changes keep coming without NOTIFY; polling every "
                        "LIVE_POLL_INTERVAL (is DATABASE_URL a transaction-pooling proxy?)")

    def _idle_wait(self, sent_at: float, swept_at: float) -> float:
        """How long the follower may sleep unless woken: until the next poll (rare while
        NOTIFY wakes it), the next session sweep, or the counts owed after a batch; those
        two no sooner than a poll would come (a sweep interval of 0 is no busy loop)."""
        config = self.app.config
        poll = config["LIVE_POLL_INTERVAL"]
        due = [swept_at + config["SESSION_SWEEP_SECONDS"]]
        if self._unannounced:
            due.append(sent_at + config["LIVE_MAX_FRAME_SPACING"])
        trusted = self._listening and self._unheard < 2
        return min(config["LIVE_LISTEN_POLL_INTERVAL"] if trusted else poll,
                   max(min(due) - time.monotonic(), poll))

    def _subscribers(self) -> int:
        return self._plain_subscribers() + len(self.views.by_sid)

    @staticmethod
    def _plain_subscribers() -> int:
        return len(socketio.server.manager.rooms.get(NAMESPACE, {}).get(ROOM, ()))

    def _listen(self) -> None:
        """Wake on PostgreSQL NOTIFY user_changes (sent by the trigger at commit)."""
        import psycopg  # only needed on PostgreSQL

        with self.app.app_context():
            url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        failures = 0
        while True:
            try:
                # Keepalives: a silently dead server is noticed in about 20 s (the
                # feed polls every LIVE_LISTEN_POLL_INTERVAL meanwhile).
                with psycopg.connect(url, autocommit=True, connect_timeout=3, keepalives=1,
                                     keepalives_idle=5, keepalives_interval=5,
                                     keepalives_count=3) as conn:
                    conn.execute("LISTEN user_changes")
                    if failures:
                        log.warning("live feed: LISTEN connection back")
                        failures = 0
                    self._listening = True
                    try:
                        self.wake()  # whatever was committed while (re)connecting
                        for _ in conn.notifies():
                            self._unheard = 0
                            self.wake()
                    finally:  # poll now, then every LIVE_POLL_INTERVAL until it is back
                        self._listening = False
                        self.wake()
            except Exception as exc:  # psycopg.Error or any other: never stop listening
                failures += 1
                if failures == 1:
                    log.warning("live feed: LISTEN connection lost (%s), reconnecting with "
                                "backoff", _reason(exc))
                socketio.sleep(_backoff(failures))

    def _maybe_prune(self) -> None:
        config = self.app.config
        if time.monotonic() - self._last_prune < config["LIVE_PRUNE_INTERVAL"]:
            return
        self._last_prune = time.monotonic()
        pruned = prune(timedelta(seconds=config["LIVE_RETENTION_SECONDS"]))
        if pruned:
            log.info("live feed: pruned %d changes", pruned)
        if expired := prune_sessions():
            log.info("live feed: deleted %d expired login sessions", expired)

    # --- emitting ------------------------------------------------------------------------

    def head(self) -> int:
        """The last cursor emitted by this process (initialised from the database)."""
        if self.cursor is None:
            self.cursor = current_cursor()
        return self.cursor

    def poll_once(self) -> int:
        """Emit every change after ``head()`` to the subscribers; returns how many."""
        with self.lock:
            return self._poll_locked()

    def _poll_locked(self) -> int:
        """Everything up to the newest cursor, read in one snapshot: the plain stream in
        batches (yielding between them), then the views it affected, as of that cursor.

        A bulk write (more than ``LIVE_VIEW_BULK_CHANGES``) re-reads every view once
        instead of looking at each change; with no plain subscriber to send them to, its
        changes are not even loaded, but for the users connected here (``_enforce``).
        """
        sent = 0
        with consistent_read():
            upto = current_cursor()
            if upto <= self.head() and not self.views.stale():
                return 0
            bulk = upto - self.head() > self.app.config["LIVE_VIEW_BULK_CHANGES"]
            if bulk:
                self.views.mark_all()
            light = bulk and not self._plain_subscribers()
            if light:
                sent = self._skim(upto)
            while self.head() < upto:
                sent_now = self._send_batch(upto, bulk)
                if not sent_now:
                    break  # pruned before it was ever emitted
                sent += sent_now
                if self.head() < upto:
                    socketio.sleep(0)  # a burst never freezes the other clients
            if light and sent:
                self._recent = [change_payload(c)
                                for c in read_changes(max(upto - RECENT, 0), upto=upto)]
            self.cursor = max(self.head(), upto)
            self._refresh_views()
        self._unannounced += sent
        return sent

    def _send_batch(self, upto: int, bulk: bool) -> int:
        """Emit the next batch of changes to the plain stream; let the views absorb it."""
        changes = read_changes(self.head(), upto=upto, limit=BATCH_LIMIT)
        if not changes:
            return 0
        payloads = [change_payload(c) for c in changes]
        if len(payloads) == 1:
            fanout.emit(socketio.server, "change", payloads[0], ROOM, NAMESPACE)
        else:
            fanout.emit(socketio.server, "changes", payloads, ROOM, NAMESPACE)
        if not bulk:
            self.views.absorb([
                (c.cursor, c.user_id, user_payload(c.row_before) if c.row_before else None,
                 p["row"], p)
                for c, p in zip(changes, payloads, strict=True)
            ])
        for change in changes:
            self._enforce(change.user_id, change.row_before, change.row_after)
        self.cursor = changes[-1].cursor
        self._recent = (self._recent + payloads)[-RECENT:]
        return len(changes)

    def _skim(self, upto: int) -> int:
        """Pass a bulk write that no plain subscriber waits for: only the changes of the
        users connected here are loaded, for ``_enforce``; returns how many went by."""
        for change in read_changes_of(online_user_ids(), self.head(), upto):
            self._enforce(change.user_id, change.row_before, change.row_after)
        count = count_changes(self.head(), upto)
        self.cursor = upto
        return count

    def announce_counts(self) -> None:
        """Send every view subscriber the counters and the changes since the last time.

        Sent after the views' own events, at most every ``LIVE_COUNTS_INTERVAL``: a
        second fan-out to every client must not delay the first.
        """
        if not self._unannounced:
            return
        if not self.views.by_sid:
            self._unannounced, self._recent = 0, []
            return
        with self.lock:
            counts = table_counts()
            db.session.rollback()
            event = {"cursor": self.head(), "counts": counts, "changes": self._unannounced,
                     "recent": self._recent}
            self._unannounced, self._recent = 0, []
            fanout.emit(socketio.server, "counts", event, VIEWS_ROOM, NAMESPACE)

    def _refresh_views(self) -> None:
        """Re-read the pages that changes may have altered and send each its diff; tell
        the others whose total moved. Inside the poll's snapshot, as of ``head()``."""
        cursor, totals = self.head(), {}
        for listing, offset, limit, pages in plan_reads(self.views.stale()):
            socketio.sleep(0)  # one query at a time: the others' clients go on meanwhile
            key = listing.filter_key
            if key not in totals:
                # Pages of one filter share their total; one unseen change recounts it.
                recount = any(page.recount for page in pages)
                totals[key] = listing.count() if recount else pages[0].total
            known = {}  # rows the pages hold: only users changed since are read whole
            for page in pages:
                known.update(page.rows)
            users = listing.payloads(offset, limit, totals[key], known)
            for page in pages:
                page.total = totals[key]
                start = page.listing.offset - offset
                event = diff(page, cursor, page.total,
                             users[start:start + page.listing.per_page])
                if event is not None:
                    self.views.emit(page, event)
        self.views.announce_totals(cursor)

    def catch_up(self, cursor: int) -> None:
        """Emit everything up to ``cursor`` to the room before a new client joins it
        (under the lock)."""
        if cursor > self.head():
            self._poll_locked()
            # Changes pruned before they were ever emitted cannot be sent.
            self.cursor = max(self.head(), cursor)

    def _enforce(self, user_id: int, before: dict | None, after: dict | None) -> None:
        """Apply an account change to open sockets: close a deactivated or deleted user's
        connections; tell a user whose role changed, so pages adapt."""
        if not before or not before["active"]:
            return
        if not after or not after["active"]:
            disconnect_local(user_id)
        elif after["role"] != before["role"]:
            socketio.server.emit("permissions", {"role": after["role"], "active": True},
                                 to=user_room(user_id), namespace=NAMESPACE, ignore_queue=True)
