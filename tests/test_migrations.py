"""``flask db upgrade`` on empty databases, no drift from the models, triggers in place."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from app.extensions import db
from config import database_url
from tests.conftest import ROOT

TABLES = {"users", "api_tokens", "user_changes", "change_context", "live_state", "chat_messages"}


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


def drift(engine: Engine) -> list:
    """What autogenerate would add to a new migration (triggers are not compared)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


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
