"""PostgreSQL's change log takes its ordering lock at commit (migration 0009): writers of
users no longer wait for each other's round trips, and cursors still follow commit order.

Raw connections, as any program outside the app; each with a lock timeout, so that a
writer that waits where it should not fails at once instead of hanging the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.engine import make_url

pytestmark = [pytest.mark.postgres,
              pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]
Connect = Callable[[], psycopg.Connection]


@pytest.fixture
def connect(db_url: str) -> Iterator[Connect]:
    """Open connections to the test's migrated database (closed at the end)."""
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    opened: list[psycopg.Connection] = []

    def open_connection() -> psycopg.Connection:
        conn = psycopg.connect(url, connect_timeout=5, options="-c lock_timeout=3s")
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        conn.close()


def add_users(conn: psycopg.Connection, *names: str) -> list[int]:
    ids = [conn.execute("INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id",
                        (name, f"{name}@example.com")).fetchone()[0] for name in names]
    conn.commit()
    return ids


def changes_after(conn: psycopg.Connection, cursor: int) -> list[tuple]:
    """(op, user_id, email after, email before, origin) of each change after ``cursor``."""
    rows = conn.execute(
        "SELECT op, user_id, row_after->>'email', row_before->>'email', origin "
        "FROM user_changes WHERE cursor > %s ORDER BY cursor", (cursor,)).fetchall()
    conn.commit()
    return rows


def newest_cursor(conn: psycopg.Connection) -> int:
    (cursor,) = conn.execute("SELECT COALESCE(max(cursor), 0) FROM user_changes").fetchone()
    conn.commit()
    return cursor


def test_an_open_write_does_not_hold_up_another_writer(connect: Connect):
    first, second = add_users(connect(), "first", "second")
    slow, fast = connect(), connect()
    slow.execute("UPDATE users SET email = 'slow@example.com' WHERE id = %s", (first,))
    # Would raise LockNotAvailable after 3 s if the open write held the lock.
    fast.execute("UPDATE users SET email = 'fast@example.com' WHERE id = %s", (second,))
    fast.commit()
    slow.rollback()
    assert changes_after(connect(), 0)[-1][:3] == ("update", second, "fast@example.com")


def test_cursors_follow_commit_order_not_write_order(connect: Connect):
    first, second = add_users(connect(), "first", "second")
    reader = connect()
    start = newest_cursor(reader)
    early, late = connect(), connect()
    early.execute("UPDATE users SET email = 'early@example.com' WHERE id = %s", (first,))
    late.execute("UPDATE users SET email = 'late@example.com' WHERE id = %s", (second,))
    late.commit()
    assert changes_after(reader, start) == [
        ("update", second, "late@example.com", "second@example.com", "sql")]
    early.commit()
    assert [c[1] for c in changes_after(reader, start)] == [second, first]


def test_the_lock_is_taken_at_commit(connect: Connect):
    """While another transaction commits (holds the lock), a write goes through and only
    its commit waits."""
    (user,) = add_users(connect(), "someone")
    committing, writer = connect(), connect()
    committing.execute("SELECT pg_advisory_xact_lock(7461832)")
    writer.execute("SET lock_timeout = '300ms'")
    writer.execute("UPDATE users SET email = 'new@example.com' WHERE id = %s", (user,))
    with pytest.raises(errors.LockNotAvailable):
        writer.commit()
    committing.rollback()


def test_a_changes_time_is_its_commit_not_its_transactions_start(connect: Connect):
    (user,) = add_users(connect(), "slowpoke")
    writer, clock = connect(), connect()
    writer.execute("UPDATE users SET email = 'late@example.com' WHERE id = %s", (user,))
    time.sleep(1)
    (before_commit,) = clock.execute("SELECT clock_timestamp()").fetchone()
    writer.commit()
    (at,) = clock.execute("SELECT created_at FROM user_changes WHERE user_id = %s "
                          "ORDER BY cursor DESC LIMIT 1", (user,)).fetchone()
    assert at >= before_commit


def test_one_transaction_logs_its_changes_in_order(connect: Connect):
    conn = connect()
    start = newest_cursor(conn)
    (user,) = conn.execute("INSERT INTO users (username, email) VALUES ('temp', "
                           "'a@example.com') RETURNING id").fetchone()
    conn.execute("UPDATE users SET email = 'b@example.com' WHERE id = %s", (user,))
    conn.execute("UPDATE users SET email = 'b@example.com' WHERE id = %s", (user,))  # no-op
    conn.execute("UPDATE users SET email = 'c@example.com' WHERE id = %s", (user,))
    conn.execute("DELETE FROM users WHERE id = %s", (user,))
    assert conn.execute("SELECT count(*) FROM user_changes WHERE cursor > %s",
                        (start,)).fetchone() == (0,)  # not before the commit
    conn.commit()
    assert changes_after(conn, start) == [
        ("insert", user, "a@example.com", None, "sql"),
        ("update", user, "b@example.com", "a@example.com", "sql"),
        ("update", user, "c@example.com", "b@example.com", "sql"),
        ("delete", user, None, "c@example.com", "sql"),
    ]
    versions = conn.execute("SELECT row_after->>'version' FROM user_changes "
                            "WHERE cursor > %s AND op != 'delete' ORDER BY cursor",
                            (start,)).fetchall()
    assert versions == [("1",), ("2",), ("3",)]  # the bump stayed immediate


def test_a_rolled_back_savepoint_logs_nothing(connect: Connect):
    (user,) = add_users(connect(), "kept")
    conn = connect()
    start = newest_cursor(conn)
    conn.execute("UPDATE users SET email = 'kept2@example.com' WHERE id = %s", (user,))
    with pytest.raises(errors.UniqueViolation), conn.transaction():
        conn.execute("INSERT INTO users (username, email) VALUES ('x', 'x@example.com')")
        conn.execute("INSERT INTO users (username, email) VALUES ('y', 'x@example.com')")
    conn.commit()
    assert [c[:2] for c in changes_after(conn, start)] == [("update", user)]


def test_truncate_logs_a_delete_of_every_row(connect: Connect):
    conn = connect()
    ids = add_users(conn, "one", "two")
    start = newest_cursor(conn)
    conn.execute("TRUNCATE users CASCADE")
    conn.commit()
    assert changes_after(conn, start) == [("delete", ids[0], None, "one@example.com", "sql"),
                                          ("delete", ids[1], None, "two@example.com", "sql")]


def test_truncate_after_a_write_in_the_same_transaction(connect: Connect):
    """PostgreSQL refuses to TRUNCATE a table with deferred events pending; logging them
    first (SET CONSTRAINTS ... IMMEDIATE) lets it, in order."""
    conn = connect()
    start = newest_cursor(conn)
    conn.execute("INSERT INTO users (username, email) VALUES ('new', 'new@example.com')")
    with pytest.raises(errors.ObjectInUse, match="pending trigger events"):
        conn.execute("TRUNCATE users CASCADE")
    conn.rollback()
    (user,) = conn.execute("INSERT INTO users (username, email) VALUES ('new', "
                           "'new@example.com') RETURNING id").fetchone()
    conn.execute("SET CONSTRAINTS users_change_log IMMEDIATE")
    conn.execute("TRUNCATE users CASCADE")
    conn.commit()
    assert [c[:2] for c in changes_after(conn, start)] == [("insert", user), ("delete", user)]


def test_counts_and_minutes_follow_concurrent_writers(connect: Connect):
    """user_counts and change_minutes, kept by triggers that relied on writers queueing,
    stay right when transactions overlap."""
    first, second = add_users(connect(), "first", "second")
    one, two = connect(), connect()
    one.execute("UPDATE users SET role = 'admin' WHERE id = %s", (first,))
    two.execute("UPDATE users SET email = 'two@example.com' WHERE id = %s", (second,))
    two.commit()  # no count changed: it does not queue behind ``one``
    one.commit()
    check = connect()
    counts = check.execute("SELECT role, active, n FROM user_counts WHERE n <> 0 "
                           "ORDER BY role").fetchall()
    assert counts == [("admin", True, 1), ("user", True, 1)]
    (logged,) = check.execute("SELECT sum(n) FROM change_minutes").fetchone()
    assert logged == newest_cursor(check) == 4
