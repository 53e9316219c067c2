"""Per-connection database settings."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.extensions import db


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # Foreign keys: token and chat rows go with their user. WAL: the live feed's
    # reads never block a writer's commit; with synchronous=NORMAL (the usual WAL
    # setting) a commit does not wait for an fsync. busy_timeout: writers queue.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
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
    fail fast (a request is answered 503 within seconds, not after TCP's minutes)."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
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
