"""The change log ``user_changes``: cursors, reads, payloads, snapshots and pruning.

The log is written by the database triggers (migration 0002), whoever the writer; this
module only reads it (and prunes it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.extensions import db, socketio
from app.live.minutes import minute_of, prune_minutes
from app.models import LiveState, User, UserChange, user_payload, utcnow
from app.reads import read_all

WATCHED_FIELDS = ("username", "email", "role", "active")
PRUNE_BATCH = 5000


# Built once: the follower runs them on every poll, and building a statement costs more
# than running it.
_PRUNED_THROUGH = select(LiveState.value).where(LiveState.key == "pruned_through")
_CURSORS = select(func.coalesce(select(func.max(UserChange.cursor)).scalar_subquery(), 0),
                  func.coalesce(_PRUNED_THROUGH.scalar_subquery(), 0))
_CHANGES = select(UserChange).where(UserChange.cursor > bindparam("after")).order_by(
    UserChange.cursor)
_CHANGES_UPTO = _CHANGES.where(UserChange.cursor <= bindparam("upto"))
_SOME_CHANGES_UPTO = _CHANGES_UPTO.limit(bindparam("limit"))


def current_cursor() -> int:
    """The newest cursor (0 before any change); it never goes back, even after pruning.

    Read it *before* the data a page renders: the page then subscribes from it, and
    any change made in between is replayed rather than lost.
    """
    return max(db.session.execute(_CURSORS).one())


def pruned_through() -> int:
    """Every change up to this cursor may have been pruned (0: none was)."""
    return db.session.scalar(_PRUNED_THROUGH) or 0


def read_changes(after: int, upto: int | None = None, limit: int | None = None) -> list[UserChange]:
    """The changes with ``after < cursor <= upto``, in cursor order."""
    if upto is None:
        query = _CHANGES if limit is None else _CHANGES.limit(limit)
    else:
        query = _CHANGES_UPTO if limit is None else _SOME_CHANGES_UPTO
    return list(db.session.scalars(query, {"after": after, "upto": upto, "limit": limit}))


def count_changes(after: int, upto: int) -> int:
    """How many changes have ``after < cursor <= upto`` (a bulk write's million: off the
    hub)."""
    return read_all(select(func.count().label("n")).select_from(UserChange).where(
        UserChange.cursor > after, UserChange.cursor <= upto))[0]["n"]


def read_changes_of(user_ids: set[int], after: int, upto: int) -> list[UserChange]:
    """The changes of these users with ``after < cursor <= upto``, in cursor order."""
    changes: list[UserChange] = []
    ids = sorted(user_ids)
    for start in range(0, len(ids), 500):
        changes += db.session.scalars(select(UserChange).where(
            UserChange.user_id.in_(ids[start:start + 500]),
            UserChange.cursor > after, UserChange.cursor <= upto))
    return sorted(changes, key=lambda c: c.cursor)


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


@contextmanager
def consistent_read() -> Iterator[None]:
    """Run the reads inside in one snapshot of the database, then end it.

    PostgreSQL: a REPEATABLE READ transaction (its default gives each statement its own
    snapshot). SQLite: an explicit BEGIN, whose first read fixes the WAL snapshot (the
    driver would otherwise run each SELECT on its own).
    """
    db.session.rollback()
    if db.engine.dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        db.session.connection().exec_driver_sql("BEGIN")
    try:
        yield
    finally:
        db.session.rollback()


def every_user() -> list[dict[str, Any]]:
    """Every user, by id (a plain subscribe's snapshot: inside ``consistent_read``)."""
    return [u.to_dict() for u in db.session.scalars(select(User).order_by(User.id))]


def prune(retention: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Delete changes older than ``retention``, remember how far; returns how many.

    Deleted in batches of ``batch`` rows, each its own short transaction, so writers
    never wait long for the log (SQLite reuses the freed pages), yielding between them.
    """
    cutoff = utcnow() - retention
    last = db.session.scalar(
        select(func.max(UserChange.cursor)).where(UserChange.created_at < cutoff)
    )
    db.session.rollback()
    if last is None:
        return 0
    prune_minutes(minute_of(cutoff))  # the chart's counts go with the changes they count
    db.session.commit()
    count = 0
    while True:
        upto = db.session.scalar(
            select(UserChange.cursor).where(UserChange.cursor <= last)
            .order_by(UserChange.cursor).offset(batch - 1).limit(1)
        ) or last
        deleted = db.session.execute(delete(UserChange).where(UserChange.cursor <= upto)).rowcount
        _raise_pruned_through(upto)
        db.session.commit()
        count += deleted
        if upto >= last:
            return count
        socketio.sleep(0)  # the follower prunes: its clients go on between batches


def _raise_pruned_through(cursor: int) -> None:
    """``pruned_through`` becomes at least ``cursor``, in SQL: processes pruning at the
    same time never move it back (the row's lock orders them; a read-then-write could)."""
    insert = sqlite_insert if db.engine.dialect.name == "sqlite" else pg_insert
    db.session.execute(insert(LiveState).values(key="pruned_through", value=0)
                       .on_conflict_do_nothing())
    db.session.execute(update(LiveState).where(LiveState.key == "pruned_through").values(
        value=case((LiveState.value < cursor, cursor), else_=LiveState.value)))
