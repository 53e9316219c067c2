"""Who made a change: actor and origin recorded by the triggers in the same transaction.

The triggers in the migrations write every change of ``users`` to ``user_changes``.
Writes made by the app also say who made them: on PostgreSQL through transaction-local
settings the trigger reads; on SQLite through the one-row ``change_context`` table,
filled before each flush and emptied after it, inside the same write transaction.
After a commit that touched users, the in-process feed is woken at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import User

CONTEXT_KEY = "change_context"
TOUCHED_KEY = "users_touched"
WRITTEN_KEY = "change_context_written"
# Built once (every write runs them).
_SET_CONTEXT_PG = text("SELECT set_config('livecrud.actor', :actor, true), "
                       "set_config('livecrud.origin', :origin, true)")
_SET_CONTEXT_SQLITE = text("INSERT OR REPLACE INTO change_context (id, actor, origin) "
                           "VALUES (1, :actor, :origin)")
_CLEAR_CONTEXT_SQLITE = text("DELETE FROM change_context")


def set_change_context(actor: str | None, origin: str) -> None:
    """Record who makes the writes of the current session (``ui``, ``api``, ``cli``...)."""
    db.session.info[CONTEXT_KEY] = (actor, origin)


def _touches_users(session: Session) -> bool:
    return any(isinstance(o, User) for o in (*session.new, *session.dirty, *session.deleted))


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    if _touches_users(session):
        _write_context(session)


def _write_context(session: Session) -> None:
    session.info[TOUCHED_KEY] = True
    actor, origin = session.info.get(CONTEXT_KEY, (None, "app"))
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_SET_CONTEXT_PG, {"actor": actor or "", "origin": origin})
    else:
        conn.execute(_SET_CONTEXT_SQLITE, {"actor": actor, "origin": origin})
        session.info[WRITTEN_KEY] = True


def _after_flush(session: Session, flush_context: Any) -> None:
    _clear_context(session)


def _clear_context(session: Session) -> None:
    if session.info.pop(WRITTEN_KEY, False):  # empty it in the flush that filled it
        session.connection().execute(_CLEAR_CONTEXT_SQLITE)


@contextmanager
def core_writes() -> Iterator[None]:
    """Around Core statements that write users (no flush announces them): the triggers
    record them as made by the session's writer, and the feed is woken on commit. After
    an error inside, roll back (that takes the context with it)."""
    db.session.flush()
    _write_context(db.session)
    yield
    _clear_context(db.session)


def _after_commit(session: Session) -> None:
    if session.info.pop(TOUCHED_KEY, False):
        feed = current_app.extensions.get("live_feed")
        if feed is not None:
            feed.wake()


def _after_rollback(session: Session) -> None:
    session.info.pop(TOUCHED_KEY, None)
    session.info.pop(WRITTEN_KEY, None)  # the rollback took the context row with it


def init_capture() -> None:
    """Install the session hooks once (they are global to the Session class)."""
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
