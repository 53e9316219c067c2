"""``flask db upgrade`` on empty databases, no drift from the models, triggers in place."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Engine, create_engine, inspect, text
from sqlalchemy.schema import CreateIndex

from app.extensions import db
from app.models import include_name
from config import database_url
from tests.conftest import ROOT

TABLES = {"users", "api_tokens", "user_changes", "change_context", "live_state", "chat_messages",
          "user_counts", "change_minutes", "login_sessions"}
# Indexes on expressions (lower(username)...): Alembic cannot compare them on SQLite
# (neither side reflects) and misreads PostgreSQL's rendering of them, so
# ``expression_index_drift`` compares them exactly instead.
EXPRESSION_INDEXES = {
    index.name: index
    for table in db.metadata.tables.values()
    for index in table.indexes
    if not all(isinstance(e, Column) for e in index.expressions)
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database that no migration has touched."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url(empty_url))
    yield engine
    engine.dispose()


def flask_db(url: str, tmp_path: Path, *args: str) -> None:
    """Run ``flask db ...`` in its own process from the repository root; it must succeed."""
    env = {**os.environ, "DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "instance")}
    env.pop("FLASK_APP", None)
    result = subprocess.run([sys.executable, "-m", "flask", "db", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _not_expression_index(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def drift(engine: Engine) -> list:
    """What autogenerate would add to a new migration (triggers are not compared), and
    any expression index that differs from the models."""
    names = "|".join(map(re.escape, EXPRESSION_INDEXES))
    with engine.connect() as conn, warnings.catch_warnings():
        # Only these warnings, only for these indexes, which are compared below; an
        # expression index the models do not declare still warns, and so fails.
        warnings.filterwarnings("ignore", rf"Skipped unsupported reflection of "
                                rf"expression-based index ({names})$")
        warnings.filterwarnings("ignore", rf"autogenerate skipping metadata-specified "
                                rf"expression-based index '({names})';")
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_name": include_name,
            "include_object": _not_expression_index,
        })
        return compare_metadata(context, db.metadata) + expression_index_drift(conn)


def _index_sql(conn: Connection, name: str) -> str | None:
    if conn.dialect.name == "sqlite":
        sql = conn.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'index' "
                               "AND name = :name"), {"name": name})
    else:
        sql = conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                          {"name": name})
    return " ".join(sql.split()) if sql else None


def expression_index_drift(conn: Connection) -> list:
    """``("add_index" | "change_index", Index)`` for each expression index of the models
    missing from the database or defined otherwise. The database's own rendering of
    the model's index is the reference: SQLite keeps the DDL as written; PostgreSQL's
    is read back from a copy created and rolled back."""
    found = []
    for name, index in EXPRESSION_INDEXES.items():
        if index.info.get("dialect", conn.dialect.name) != conn.dialect.name:
            continue
        actual = _index_sql(conn, name)
        if actual is None:
            found.append(("add_index", index))
            continue
        ddl = str(CreateIndex(index).compile(dialect=conn.dialect))
        if conn.dialect.name == "sqlite":
            expected = " ".join(ddl.split())
        else:
            with conn.begin_nested() as savepoint:
                probe = f"{name}_probe"
                conn.execute(text(ddl.replace(name, probe, 1)))
                expected = _index_sql(conn, probe).replace(probe, name, 1)
                savepoint.rollback()
        if actual != expected:
            found.append(("change_index", index, actual, expected))
    if conn.in_transaction():
        conn.rollback()
    return found


def assert_changes_captured(engine: Engine, username: str) -> None:
    """A plain SQL insert into users shows up in user_changes, made by ``sql``."""
    with engine.begin() as conn:
        user_id = conn.execute(
            text("INSERT INTO users (username, email) VALUES (:name, :email) RETURNING id"),
            {"name": username, "email": f"{username}@example.com"},
        ).scalar_one()
    with engine.connect() as conn:
        change = conn.execute(
            text("SELECT op, user_id, origin FROM user_changes ORDER BY cursor DESC")
        ).first()
    assert tuple(change) == ("insert", user_id, "sql")


def test_upgrade_an_empty_database(empty_url: str, engine: Engine, tmp_path: Path):
    flask_db(empty_url, tmp_path, "upgrade")
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert drift(engine) == []
    assert_changes_captured(engine, "plain_sql")
    flask_db(empty_url, tmp_path, "upgrade")  # already at head: nothing to do


def test_downgrade_to_base_then_upgrade(empty_url: str, engine: Engine, tmp_path: Path):
    flask_db(empty_url, tmp_path, "upgrade")
    flask_db(empty_url, tmp_path, "downgrade", "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    flask_db(empty_url, tmp_path, "upgrade")
    assert drift(engine) == []
    assert_changes_captured(engine, "after_downgrade")


def _sqlite(path: Path, *statements: str) -> list[list[tuple]]:
    """Run statements on a connection of their own (foreign keys on, as the app's)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        results = [conn.execute(s).fetchall() for s in statements]
        conn.commit()
    return results


def _attached(path: Path) -> dict[str, str]:
    """Every index and trigger of the database, by name: its SQL (None for the indexes
    SQLite makes for UNIQUE constraints)."""
    (rows,) = _sqlite(path, "SELECT name, sql FROM sqlite_master WHERE type IN "
                      "('index', 'trigger')")
    return dict(rows)


def test_rebuilding_users_as_autoincrement_keeps_everything(tmp_path: Path):
    """0005 rebuilds the SQLite users table: every row, index (expression ones included)
    and trigger (change log, counts, search) survives it and its downgrade, the tokens'
    and chat messages' foreign keys hold, and no id seen before is handed out again."""
    path = tmp_path / "rebuild.sqlite"
    url = f"sqlite:///{path}"
    flask_db(url, tmp_path, "upgrade", "0004")
    _sqlite(path, *(f"INSERT INTO users (username, email) VALUES ('{n}', '{n}@example.com')"
                    for n in ("alice", "bobby", "carol", "dave")),
            "INSERT INTO api_tokens (user_id, token_hash, created_at, expires_at) "
            "VALUES (2, 'hash', '2026-01-01', '2027-01-01')",
            "INSERT INTO chat_messages (room, sender_id, recipient_id, text, created_at) "
            "VALUES (NULL, 2, 3, 'hi', '2026-01-01')",
            "DELETE FROM users WHERE id = 4")  # the largest id: SQLite gave it out again
    before = _attached(path)
    assert {"users_change_update", "users_fts_insert", "user_counts_delete",
            "ix_users_lower_email_id", "ix_users_created_at_id"} <= set(before)

    flask_db(url, tmp_path, "upgrade", "0005")
    assert _attached(path) == before
    table, sequence, counts, found, keys = _sqlite(
        path, "SELECT sql FROM sqlite_master WHERE name = 'users'",
        "SELECT seq FROM sqlite_sequence WHERE name = 'users'",
        "SELECT role, active, n FROM user_counts",
        "SELECT rowid FROM users_fts WHERE users_fts MATCH 'obb'",
        "PRAGMA foreign_key_list(chat_messages)")
    assert "AUTOINCREMENT" in table[0][0]
    assert sequence == [(4,)] and counts == [("user", 1, 3)] and found == [(2,)]
    assert {row[2] for row in keys} == {"users"}
    (new_id,) = _sqlite(path, "INSERT INTO users (username, email) "
                        "VALUES ('erin', 'e@example.com') RETURNING id")
    _, tokens, messages, changes = _sqlite(
        path, "DELETE FROM users WHERE id = 2", "SELECT count(*) FROM api_tokens",
        "SELECT count(*) FROM chat_messages",
        "SELECT op, user_id FROM user_changes ORDER BY cursor DESC LIMIT 2")
    assert new_id == [(5,)]
    assert tokens == [(0,)] and messages == [(0,)]  # ON DELETE CASCADE still holds
    assert changes == [("delete", 2), ("insert", 5)]

    flask_db(url, tmp_path, "downgrade", "0004")
    assert _attached(path) == before
    table, sequence, users = _sqlite(
        path, "SELECT sql FROM sqlite_master WHERE name = 'users'",
        "SELECT seq FROM sqlite_sequence WHERE name = 'users'",
        "SELECT id, username FROM users ORDER BY id")
    assert "AUTOINCREMENT" not in table[0][0] and sequence == []
    assert users == [(1, "alice"), (3, "carol"), (5, "erin")]
    flask_db(url, tmp_path, "upgrade")
    engine = create_engine(url)
    assert drift(engine) == []
    engine.dispose()


def test_ids_deleted_before_the_upgrade_are_not_handed_out(empty_url: str, engine: Engine,
                                                             tmp_path: Path):
    """A user id only the change log remembers (its user deleted before 0005, above what
    the database would hand out next) is never given to a later user."""
    flask_db(empty_url, tmp_path, "upgrade", "0004")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, email) VALUES ('a', 'a@example.com')"))
        conn.execute(text("INSERT INTO users (id, username, email) "
                          "VALUES (100, 'gone', 'gone@example.com')"))
        conn.execute(text("DELETE FROM users WHERE id = 100"))
    engine.dispose()
    flask_db(empty_url, tmp_path, "upgrade")
    with engine.begin() as conn:
        new_id = conn.execute(text("INSERT INTO users (username, email) "
                                   "VALUES ('b', 'b@example.com') RETURNING id")).scalar_one()
    assert new_id > 100


def _triggers_and_functions(engine: Engine) -> dict[str, str]:
    """Every trigger (its definition) and, on PostgreSQL, every function (its source)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master "
                                     "WHERE type = 'trigger'"))
        else:
            rows = conn.execute(text(
                "SELECT 'trigger ' || tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal UNION ALL SELECT 'function ' || proname, prosrc "
                "FROM pg_proc WHERE pronamespace = 'public'::regnamespace"))
        return dict(rows.all())


def test_change_log_at_commit_downgrades_to_what_was(empty_url: str, engine: Engine,
                                                      tmp_path: Path):
    """0009's downgrade puts back 0002's, 0003's and 0005's triggers and functions as
    they were (SQLite: 0009 changes nothing)."""
    flask_db(empty_url, tmp_path, "upgrade", "0008")
    before = _triggers_and_functions(engine)
    flask_db(empty_url, tmp_path, "upgrade")
    upgraded = _triggers_and_functions(engine)
    if engine.dialect.name == "sqlite":
        assert upgraded == before
    else:
        assert upgraded["trigger users_change_log"].startswith("CREATE CONSTRAINT TRIGGER")
        assert "trigger users_change_lock" not in upgraded
    flask_db(empty_url, tmp_path, "downgrade", "0008")
    assert _triggers_and_functions(engine) == before
    assert_changes_captured(engine, "after_0009_downgrade")
