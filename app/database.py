"""Per-connection database settings."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from app.extensions import db

T = TypeVar("T")
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_BUSY_RECOVERY}  # not BUSY_SNAPSHOT: retrying is no use
# PostgreSQL advisory lock of the app's checked writes. Not the change log's 7461832
# (migration 0009), which a writer takes at its commit: holding that one while waiting
# for a row lock would deadlock with the row's writer committing.
CHECKED_WRITES_LOCK = 7461833
_LOCK_CHECKED_WRITES = text(f"SELECT pg_advisory_xact_lock({CHECKED_WRITES_LOCK})")


def _waiting_for_lock(timeout: float, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, tried again while SQLite answers SQLITE_BUSY, for up to ``timeout``
    seconds. SQLite's own busy wait sleeps in C and would freeze every greenlet of the
    process for as long as another program holds the write lock; ``time.sleep`` here is
    gevent's under the server's monkey-patching, so the others go on meanwhile."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as error:
            left = deadline - time.monotonic()
            if getattr(error, "sqlite_errorcode", None) not in _BUSY or left <= 0:
                raise
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


class LockWaitingCursor(sqlite3.Cursor):
    """A cursor whose statements wait for the write lock without blocking the hub. The
    lock is taken by a transaction's first write (BEGIN is deferred); a statement that
    got SQLITE_BUSY changed nothing, so running it again is safe."""

    connection: LockWaitingConnection

    def execute(self, sql: str, parameters: Any = (), /) -> LockWaitingCursor:
        return _waiting_for_lock(self.connection.lock_timeout, super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> LockWaitingCursor:
        rows = seq_of_parameters
        if not isinstance(rows, list | tuple):
            rows = list(rows)  # an iterator could not be run twice
        return _waiting_for_lock(self.connection.lock_timeout, super().executemany, sql, rows)


class LockWaitingConnection(sqlite3.Connection):
    """The app's SQLite connection (``connect_args`` ``factory``): SQLite's busy timeout is
    zero, and statements and commits wait for the lock cooperatively instead, for up to
    ``timeout`` seconds (``SQLITE_LOCK_TIMEOUT``); past it, the OperationalError
    "database is locked" reaches the app, which rolls back and answers 503."""

    def __init__(self, *args: Any, timeout: float = 5.0, **kwargs: Any) -> None:
        self.lock_timeout = timeout
        super().__init__(*args, timeout=0, **kwargs)

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:
        return super().cursor(factory or LockWaitingCursor)

    def commit(self) -> None:
        _waiting_for_lock(self.lock_timeout, super().commit)


def lock_checked_writes() -> None:
    """Wait until no other checked write (the last-admin rule, bulk actions, CSV imports)
    is in progress, and keep them out until this transaction ends: what this one checks
    before it writes cannot change in between through them. SQLite needs nothing: its
    writers hold the write lock from their first write, and the checks follow one."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(_LOCK_CHECKED_WRITES)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # Foreign keys: token and chat rows go with their user. WAL: the live feed's
    # reads never block a writer's commit; with synchronous=NORMAL (the usual WAL
    # setting) a commit does not wait for an fsync. Writers queue for the lock in
    # LockWaitingConnection (busy timeout 0). Recursive triggers: a row that INSERT OR
    # REPLACE deletes fires the delete triggers (change log, counts, search index).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA recursive_triggers=ON")
    cursor.close()


def _postgres_settings(dbapi_connection: Any, connection_record: Any) -> None:
    # Custom plans always: after a few runs of a prepared statement PostgreSQL may switch
    # to a generic plan, and the generic plan of LIKE '%' || $1 || '%' scans the table
    # instead of using the trigram index (1.5 ms -> 1-2 s at a million users).
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


def engine_options(app: Flask) -> None:
    """Connection settings for the configured database, before the engine is made:
    PostgreSQL's pooled connections may die (pre-ping) and an unreachable server must
    fail fast (a request is answered 503 within seconds, not after TCP's minutes);
    SQLite waits for another program's write lock without blocking the process."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options["connect_args"] = {"factory": LockWaitingConnection,
                                   "timeout": app.config["SQLITE_LOCK_TIMEOUT"],
                                   **options.get("connect_args", {})}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    elif app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options = {"pool_pre_ping": True, "pool_timeout": 5,
                   **app.config["SQLALCHEMY_ENGINE_OPTIONS"]}
        options["connect_args"] = {"connect_timeout": 3, **options.get("connect_args", {})}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def init_database(app: Flask) -> None:
    """Install the per-connection settings on this app's engine."""
    with app.app_context():
        engine: Engine = db.engine
        listener = {"sqlite": _sqlite_pragmas, "postgresql": _postgres_settings}.get(
            engine.dialect.name)
        if listener is not None and not event.contains(engine, "connect", listener):
            event.listen(engine, "connect", listener)
