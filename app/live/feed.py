"""The change feed: reading the change log and the follower that pushes it to clients.

One ``Feed`` per process follows ``user_changes`` (written by the database triggers,
whoever the writer) and emits every new change, in cursor order, to the Socket.IO
clients of *this* process that subscribed. Changes committed in this process wake it
at once; other writers are seen by polling, or at once through LISTEN/NOTIFY on
PostgreSQL. Changes arriving within ``LIVE_BATCH_WINDOW`` go out as one frame.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, func, select

from app.auth.sockets import disconnect_local, user_room
from app.extensions import db, socketio
from app.live.acks import after_ack
from app.models import LiveState, User, UserChange, user_payload, utcnow

log = logging.getLogger(__name__)

NAMESPACE = "/users"
ROOM = "feed"
BATCH_LIMIT = 500
WATCHED_FIELDS = ("username", "email", "role", "active")


def current_cursor() -> int:
    """The newest cursor (0 before any change); it never goes back, even after pruning.

    Read it *before* the data a page renders: the page then subscribes from it, and
    any change made in between is replayed rather than lost.
    """
    newest = db.session.scalar(select(func.max(UserChange.cursor))) or 0
    return max(newest, pruned_through())


def pruned_through() -> int:
    """Every change up to this cursor may have been pruned (0: none was)."""
    return db.session.scalar(select(LiveState.value).filter_by(key="pruned_through")) or 0


def read_changes(after: int, upto: int | None = None, limit: int | None = None) -> list[UserChange]:
    """The changes with ``after < cursor <= upto``, in cursor order."""
    query = select(UserChange).where(UserChange.cursor > after).order_by(UserChange.cursor)
    if upto is not None:
        query = query.where(UserChange.cursor <= upto)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query))


def change_payload(change: UserChange) -> dict[str, Any]:
    """A change as clients receive it: the contract's fields, plus who, from where, when,
    and ``before``: the old values of the watched fields an update changed (the whole
    watched row for a delete, null for an insert)."""
    row = user_payload(change.row_after) if change.row_after else None
    before = None
    if change.row_before:
        old = user_payload(change.row_before)
        before = {f: old[f] for f in WATCHED_FIELDS if row is None or row[f] != old[f]}
    return {
        "cursor": change.cursor,
        "op": change.op,
        "id": change.user_id,
        "row": row,
        "before": before,
        "actor": change.actor,
        "origin": change.origin,
        "at": change.created_at.isoformat() if change.created_at else None,
    }


def snapshot() -> tuple[int, dict[int, dict[str, Any]]]:
    """Every user and the cursor they are as of.

    On PostgreSQL both reads share one serializable snapshot (its default would give
    each statement its own). On SQLite they may not; callers roll the rows forward
    from the cursor, which makes the result exact either way.
    """
    db.session.rollback()
    db.session.connection(execution_options={"isolation_level": "SERIALIZABLE"})
    cursor = current_cursor()
    rows = {u.id: u.to_dict() for u in db.session.scalars(select(User).order_by(User.id))}
    return cursor, rows


def prune(retention: timedelta) -> int:
    """Delete changes older than ``retention``, remember how far; returns how many."""
    cutoff = utcnow() - retention
    last = db.session.scalar(
        select(func.max(UserChange.cursor)).where(UserChange.created_at < cutoff)
    )
    if last is None:
        return 0
    count = db.session.execute(delete(UserChange).where(UserChange.cursor <= last)).rowcount
    state = db.session.get(LiveState, "pruned_through")
    if state is None:
        db.session.add(LiveState(key="pruned_through", value=last))
    else:
        state.value = max(state.value, last)
    db.session.commit()
    return count


class Feed:
    """The per-process follower of the change log (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        # Held while emitting and while a client subscribes, so a subscriber joins
        # the room exactly between two emitted batches: nothing lost, nothing twice.
        self.lock = threading.RLock()
        self.cursor: int | None = None
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._started = False
        self._last_prune = 0.0

    # --- the follower task -------------------------------------------------------------

    def start(self) -> None:
        """Start the follower (and the PostgreSQL listener) once per process."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
            with self.app.app_context():
                self.head()
                postgres = db.engine.dialect.name == "postgresql"
                db.session.rollback()
        if not self.app.config["LIVE_FEED_ENABLED"]:
            return  # tests drive poll_once() themselves
        socketio.start_background_task(self._run)
        if postgres:
            socketio.start_background_task(self._listen)

    def wake(self) -> None:
        """A change was committed: look for it now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        config = self.app.config
        sent_at = 0.0
        while True:
            self._wake.wait(timeout=config["LIVE_POLL_INTERVAL"])
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
                    self._maybe_prune()
                except Exception:  # keep following after a database hiccup
                    log.exception("live feed: poll failed")
                    socketio.sleep(1)
                finally:
                    db.session.remove()

    @staticmethod
    def _subscribers() -> int:
        return sum(1 for _ in socketio.server.manager.get_participants(NAMESPACE, ROOM))

    def _listen(self) -> None:
        """Wake on PostgreSQL NOTIFY user_changes (sent by the trigger at commit)."""
        import psycopg  # only needed on PostgreSQL

        with self.app.app_context():
            url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("LISTEN user_changes")
                    self.wake()  # whatever was committed while (re)connecting
                    for _ in conn.notifies():
                        self.wake()
            except psycopg.Error:
                log.warning("live feed: LISTEN connection lost, reconnecting", exc_info=True)
                socketio.sleep(1)

    def _maybe_prune(self) -> None:
        config = self.app.config
        if time.monotonic() - self._last_prune < config["LIVE_PRUNE_INTERVAL"]:
            return
        self._last_prune = time.monotonic()
        pruned = prune(timedelta(seconds=config["LIVE_RETENTION_SECONDS"]))
        if pruned:
            log.info("live feed: pruned %d changes", pruned)

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
        sent = 0
        while True:
            changes = read_changes(self.head(), limit=BATCH_LIMIT)
            payloads = [change_payload(c) for c in changes]
            accounts = [(c.user_id, c.row_before, c.row_after) for c in changes]
            # End the read transaction before any I/O towards clients.
            db.session.rollback()
            if not payloads:
                return sent
            if len(payloads) == 1:
                socketio.server.emit("change", payloads[0], to=ROOM, namespace=NAMESPACE,
                                     ignore_queue=True)
            else:
                socketio.server.emit("changes", payloads, to=ROOM, namespace=NAMESPACE,
                                     ignore_queue=True)
            self.cursor = payloads[-1]["cursor"]
            sent += len(payloads)
            for account in accounts:
                self._enforce(*account)
            if len(payloads) < BATCH_LIMIT:
                return sent

    def _catch_up(self, cursor: int) -> None:
        """Emit everything up to ``cursor`` to the room before a new client joins it."""
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

    # --- subscribing ---------------------------------------------------------------------

    def subscribe(self, sid: str, since: int | None) -> dict[str, Any]:
        """The acknowledgement for ``sid``'s subscription; it joins once the ack is sent.

        ``{"cursor", "changes"}`` replays what came after ``since``; a null, pruned or
        future ``since`` gets ``{"cursor", "rows"}``, a snapshot as of that cursor.
        From then on it receives every change after that cursor, exactly once.
        """
        with self.lock:
            self._catch_up(current_cursor())
            head = self.head()
            if since is not None and pruned_through() <= since <= head:
                ack = {"cursor": head,
                       "changes": [change_payload(c) for c in read_changes(since, upto=head)]}
            else:
                cursor, rows = snapshot()
                self._catch_up(cursor)
                head = self.head()
                for change in read_changes(cursor, upto=head):  # roll forward to head
                    if change.row_after:
                        rows[change.user_id] = user_payload(change.row_after)
                    else:
                        rows.pop(change.user_id, None)
                ack = {"cursor": head, "rows": list(rows.values())}
            db.session.rollback()  # end the read before any I/O towards the client
        after_ack(lambda: self.join(sid, head))
        return ack

    def join(self, sid: str, cursor: int) -> None:
        """Add ``sid`` to the room; first send it what was emitted after ``cursor``."""
        with self.lock:
            if not socketio.server.manager.is_connected(sid, NAMESPACE):
                return
            if self.head() > cursor:
                with self.app.app_context():
                    missed = [change_payload(c) for c in read_changes(cursor, upto=self.head())]
                    db.session.remove()
            else:
                missed = []
            if missed:
                socketio.server.emit("changes", missed, to=sid, namespace=NAMESPACE,
                                     ignore_queue=True)
            socketio.server.enter_room(sid, ROOM, namespace=NAMESPACE)
