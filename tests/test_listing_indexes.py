"""Migration 0003 on both databases: sort and search indexes the planner really uses,
a substring search that gives exactly ``Listing.matches``' rows, and the trigger-kept
``user_counts`` and ``change_minutes`` that stay exact whoever writes."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest
from sqlalchemy import Select, create_engine, inspect, text

from app import create_app
from app.extensions import db
from app.live.minutes import minute_of, per_minute, prune_minutes
from app.models import User, parse_timestamp, utcnow
from app.users import listing as listing_module
from app.users.counts import count_where, table_counts
from app.users.history import changes_of, history_query
from app.users.listing import SORTABLE, Listing
from app.users.service import DuplicateError, delete_user, same_username, update_user
from config import database_url
from tests.conftest import BOTH_DATABASES, ROOT
from tests.test_migrations import drift

ADDED_TABLES = {"user_counts", "change_minutes"}
SORT_INDEXES = {"username": "ix_users_lower_username_id", "email": "ix_users_lower_email_id",
                **{f: f"ix_users_{f}_id" for f in SORTABLE if f not in ("id", "username", "email")}}
# SQLite also sorts usernames by the unique index on the folded name (0012): unique, it
# orders (folded name, id) as well, and covers the page's ids too.
ALSO_SORTS_BY = {"username": "uq_users_username_folded"}


# --- helpers ----------------------------------------------------------------------------

def execute(sql: str, params: dict | list | None = None) -> None:
    """Plain SQL, committed: the writes no app code sees."""
    db.session.execute(text(sql), params)
    db.session.commit()
    db.session.expire_all()  # loaded users are stale now (no expiry on commit)


def insert_users(rows: list[dict]) -> None:
    """Plain SQL inserts (executemany), as another program would write them."""
    execute("INSERT INTO users (username, email, role, active) "
            "VALUES (:username, :email, :role, :active)", rows)


def seed(n: int) -> None:
    """``n`` users by one INSERT ... SELECT. On PostgreSQL without the row triggers of
    0002 (change log, NOTIFY), which would make it slow; counts are rebuilt after."""
    if db.engine.dialect.name == "sqlite":
        source = (f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s "
                  f"WHERE i < {n}) SELECT i FROM s")
        name = "printf('%s%07d', CASE i % 3 WHEN 0 THEN 'User' ELSE 'user' END, i)"
        email = "printf('u%07d@Example.com', i)"
    else:
        source = f"SELECT i FROM generate_series(1, {n}) AS i"
        name = "(CASE i % 3 WHEN 0 THEN 'User' ELSE 'user' END) || lpad(i::text, 7, '0')"
        email = "'u' || lpad(i::text, 7, '0') || '@Example.com'"
        db.session.execute(text("ALTER TABLE users DISABLE TRIGGER USER"))
        # Built once after the load rather than row by row, as pg_restore does.
        indexes = db.session.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users' "
            "AND indexname LIKE 'ix_users_%'")).all()
        for index, _ in indexes:
            db.session.execute(text(f"DROP INDEX {index}"))
    db.session.execute(text(
        f"INSERT INTO users (username, email, role, active) SELECT {name}, {email}, "
        f"CASE WHEN i % 100 = 1 THEN 'admin' ELSE 'user' END, i % 10 <> 0 FROM ({source}) AS s"
    ))
    if db.engine.dialect.name == "postgresql":
        for _, definition in indexes:
            db.session.execute(text(definition))
        db.session.execute(text("ALTER TABLE users ENABLE TRIGGER USER"))
        db.session.execute(text("DELETE FROM user_counts"))
        db.session.execute(text("INSERT INTO user_counts SELECT role, active, count(*) "
                                "FROM users GROUP BY role, active"))
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()


def plan(query: Select) -> str:
    """The plan of ``query`` with its real parameters, one line per node."""
    compiled = query.compile(db.engine)
    conn = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        params = tuple(compiled.params[name] for name in compiled.positiontup)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, params)
        return "\n".join(row[-1] for row in rows)
    rows = conn.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params)
    return "\n".join(row[0] for row in rows)


def assert_counts_exact() -> None:
    """user_counts is what GROUP BY says, change_minutes what the change log says."""
    grouped = db.session.execute(text(
        "SELECT role, active, count(*) FROM users GROUP BY role, active")).all()
    kept = db.session.execute(text("SELECT role, active, n FROM user_counts WHERE n <> 0")).all()
    assert {(r, bool(a)): n for r, a, n in kept} == {(r, bool(a)): n for r, a, n in grouped}
    logged: dict[int, int] = {}
    for (at,) in db.session.execute(text("SELECT created_at FROM user_changes")):
        minute = minute_of(parse_timestamp(at))
        logged[minute] = logged.get(minute, 0) + 1
    assert dict(db.session.execute(text("SELECT minute, n FROM change_minutes")).all()) == logged
    db.session.expire_all()
    users = [u.to_dict() for u in db.session.scalars(db.select(User))]
    for role, active in itertools.product(("admin", "user", None), (True, False, None)):
        expected = sum(Listing(role=role, active=active).matches(u) for u in users)
        assert count_where(role, active) == expected, (role, active)
    assert table_counts() == {
        "total": len(users),
        "active": sum(u["active"] for u in users),
        "admins": sum(u["active"] and u["role"] == "admin" for u in users),
    }


# --- the migration ----------------------------------------------------------------------

def user_indexes(engine) -> set[str]:
    """The names of the indexes on users (read directly: SQLAlchemy does not reflect
    SQLite's expression indexes)."""
    sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'"
           if engine.dialect.name == "sqlite"
           else "SELECT indexname FROM pg_indexes WHERE tablename = 'users'")
    with engine.connect() as conn:
        return set(conn.scalars(text(sql)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite'}"
    return request.getfixturevalue("pg_database")


def migrate(url: str, step: str, revision: str) -> None:
    """``flask db upgrade|downgrade revision``, in this process (fast)."""
    import flask_migrate

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_url(url)})
    with app.app_context():
        getattr(flask_migrate, step)(directory=str(ROOT / "migrations"), revision=revision)
        db.engine.dispose()


def test_upgrade_fills_downgrade_removes_upgrade_again(empty_url: str):
    """0003 fills its tables from rows written before it, and goes away cleanly."""
    engine = create_engine(database_url(empty_url))
    try:
        migrate(empty_url, "upgrade", "0002")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (username, email, role, active) VALUES "
                              "('Early_Bird', 'e@x.org', 'admin', true), "
                              "('later', 'l@x.org', 'user', false)"))
        for step in ("upgrade", "downgrade", "upgrade"):
            # Up to the newest revision, so that the models' drift check applies.
            migrate(empty_url, step, "head" if step == "upgrade" else "0002")
            names = set(inspect(engine).get_table_names())
            indexes = user_indexes(engine)
            if step == "downgrade":
                assert not names & (ADDED_TABLES | {"users_fts"})
                assert not {n for n in indexes if n.startswith("ix_users_")}
                continue
            assert names >= ADDED_TABLES
            assert indexes >= set(SORT_INDEXES.values())
            if engine.dialect.name == "postgresql":
                assert indexes >= {"ix_users_username_trgm", "ix_users_email_trgm"}
            assert drift(engine) == []
            with engine.begin() as conn:
                assert sorted(conn.execute(text("SELECT role, active, n FROM user_counts"))
                              .all()) == [("admin", True, 1), ("user", False, 1)]
                assert conn.scalar(text("SELECT sum(n) FROM change_minutes")) == 2
                if engine.dialect.name == "sqlite":
                    assert conn.scalar(text(
                        "SELECT rowid FROM users_fts WHERE users_fts MATCH '\"rly_b\"'")) == 1
    finally:
        engine.dispose()


# --- the counts -------------------------------------------------------------------------

@BOTH_DATABASES
def test_counts_stay_exact_through_the_app_and_plain_sql(app, make_user):
    assert_counts_exact()
    admin = make_user("admin", role="admin")
    alice = make_user("alice")
    carol = make_user("carol", active=False)
    assert_counts_exact()
    update_user(alice, {"role": "admin"}, alice.version)
    update_user(carol, {"email": "carol@elsewhere.org"}, carol.version)  # neither changes
    update_user(carol, {"active": True}, carol.version)
    assert_counts_exact()
    delete_user(carol)
    assert_counts_exact()

    insert_users([{"username": f"bulk{i}", "email": f"bulk{i}@example.com",
                   "role": "admin" if i % 7 == 0 else "user", "active": i % 3 > 0}
                  for i in range(300)])
    assert_counts_exact()
    execute("UPDATE users SET active = NOT active WHERE username LIKE 'bulk%'")
    execute("UPDATE users SET role = 'admin', active = true WHERE username LIKE 'bulk1%'")
    execute("UPDATE users SET email = upper(email)")  # every row, no count changes
    execute("UPDATE users SET active = active")  # no change at all, nothing logged
    assert_counts_exact()
    execute("DELETE FROM users WHERE username LIKE 'bulk2%'")
    assert_counts_exact()
    assert count_where("admin", True) == db.session.scalar(
        text("SELECT count(*) FROM users WHERE role = 'admin' AND active = true"))
    assert admin.id and table_counts()["admins"] >= 2


@BOTH_DATABASES
def test_counts_roll_back_with_the_write(app, make_user):
    make_user("admin", role="admin")
    db.session.execute(text("INSERT INTO users (username, email) VALUES ('gone', 'g@x.org')"))
    db.session.execute(text("UPDATE users SET active = false"))
    db.session.rollback()
    db.session.execute(text("UPDATE users SET email = 'admin@elsewhere.org'"))
    savepoint = db.session.begin_nested()  # rolled back inside a write that commits
    db.session.execute(text("UPDATE users SET role = 'user'"))
    savepoint.rollback()
    db.session.commit()
    assert_counts_exact()
    assert table_counts() == {"total": 1, "active": 1, "admins": 1}


@BOTH_DATABASES
def test_change_minutes_feed_the_chart_and_prune(app, make_user, admin_client):
    make_user("alice")
    execute("UPDATE users SET active = false WHERE username = 'alice'")
    assert_counts_exact()
    now = utcnow()
    chart = per_minute(now)
    assert sum(chart) == 3 and len(chart) == 60  # admin, alice, alice's update
    current = minute_of(now)
    execute("INSERT INTO change_minutes (minute, n) VALUES (:a, 5), (:b, 7)",
            {"a": current - 59, "b": current - 60})
    assert per_minute(now)[0] == 5 and sum(per_minute(now)) == 8
    assert prune_minutes(current - 59) == 1
    db.session.commit()
    assert db.session.scalar(text("SELECT count(*) FROM change_minutes")) == 2
    stats = admin_client.get("/live/stats").get_json()
    assert len(stats["per_minute"]) == 60 and sum(stats["per_minute"]) == 8


# --- the search -------------------------------------------------------------------------

ODD_USERS = [
    ("Alice", "alice@Example.com"), ("ALICE_2", "a2@example.org"), ("bob%cat", "b@x.io"),
    ("under_score", "u_s@x.io"), ("underXscore", "uxs@x.io"), ('quo"te', 'q"@x.io'),
    ("100%_sure", "sure@x.io"), ("Émile", "emile@x.fr"), ("émile", "EMILE2@x.fr"),
    ("Straße", "strasse@x.de"), ("\u212aelvin", "kelvin@x.io"), ("a/b\\c", "slash@x.io"),
    ("tab\tname", "t@x.io"), ("aaa", "aaaa@x.io"), ("xyz", "XYZ@x.io"),
]
NEEDLES = ["a", "A", "%", "_", '"', "/", "\\", "é", "É", "ab", "Al", "_s", "%_", '"t',
           "ali", "ALICE", "ice_", "b%c", "r_s", "rxs", "0%_", 'quo"', 'o"te', "Émi", "émi",
           "mile", "straß", "strasse", "kelvin", "\u212ael", "elv", "a/b", "b\\c", "aaaa",
           "b\tn", "@example.", "EXAMPLE.COM", "x.io", "zzz", "a%", "%%%", "___", '"""']


@BOTH_DATABASES
def test_search_gives_exactly_the_python_rule(app, make_user):
    make_user("admin", role="admin")
    insert_users([{"username": u, "email": e, "role": "user", "active": True}
                  for u, e in ODD_USERS])
    execute("UPDATE users SET username = 'Renamed_Alice' WHERE username = 'Alice'")
    execute("DELETE FROM users WHERE username = 'xyz'")
    everyone = [u.to_dict() for u in db.session.scalars(db.select(User))]
    for needle in NEEDLES:
        listing = Listing(q=needle, sort="username")
        expected = {u["id"] for u in everyone if listing.matches(u)}
        assert {u.id for u in listing.rows(0, 1000)} == expected, needle
        assert listing.count() == len(expected), needle
    assert {u.username for u in Listing(q="aLiCe").rows(0, 100)} == {"Renamed_Alice", "ALICE_2"}


# --- the plans --------------------------------------------------------------------------

# Big enough that a sequential scan would cost the planner far more than the index.
BIG = 100_000

@BOTH_DATABASES
def test_every_sort_reads_its_index_without_sorting(app):
    postgres = db.engine.dialect.name == "postgresql"
    seed(BIG if postgres else BIG // 5)
    if postgres:  # as autovacuum leaves a loaded table: its pages marked all-visible
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM users"))
    for field, index in SORT_INDEXES.items():
        for sort, offset in itertools.product((field, f"-{field}"), (0, 100_000)):
            text_plan = plan(Listing(sort=sort).page_ids(offset, 20))
            assert index in text_plan or ALSO_SORTS_BY.get(field, "?") in text_plan, (
                sort, offset, text_plan)
            assert "Sort" not in text_plan and "TEMP B-TREE" not in text_plan, text_plan
            if postgres:  # a deep page's offset walks the index, not the table
                assert "Index Only Scan" in text_plan, text_plan
            else:
                assert "COVERING INDEX" in text_plan, text_plan
    n = db.session.scalar(text("SELECT max(id) FROM users"))
    assert [u.username.lower() for u in Listing(sort="-username").rows()][:2] == [
        f"user{n:07d}", f"user{n - 1:07d}"]


@BOTH_DATABASES
def test_search_reads_the_trigram_index(app):
    seed(BIG if db.engine.dialect.name == "postgresql" else BIG // 5)
    for needle in ("R0001234", "001234@exa", "zzzq"):
        for query in (Listing(q=needle, sort="username").page_select(0, 20, None, User),
                      db.select(db.func.count()).select_from(User)
                      .where(*Listing(q=needle).conditions())):
            text_plan = plan(query)
            if db.engine.dialect.name == "sqlite":
                assert "users_fts VIRTUAL TABLE" in text_plan, text_plan
                assert "SCAN users\n" not in text_plan + "\n", text_plan
            else:
                assert "ix_users_username_trgm" in text_plan, text_plan
                assert "ix_users_email_trgm" in text_plan, text_plan
                assert "Seq Scan" not in text_plan, text_plan
    assert [u.username for u in Listing(q="R0001234").rows()] == ["user0001234"]
    assert Listing(q="u00012").count() == 100


@BOTH_DATABASES
def test_pages_read_from_the_end_are_the_pages_read_from_the_start(app, monkeypatch):
    """A page past the middle is read backward from the list's end (its offset is
    shorter): every page of every sort, ties and filters included, is the same rows in
    the same order as read forward, and as the Python rule sorts them."""
    seed(203)
    monkeypatch.setattr(listing_module, "BACKWARD_FROM", 20)
    execute("UPDATE users SET version = 1 + id % 4, role = CASE WHEN id % 7 = 0 "
            "THEN 'admin' ELSE 'user' END")
    everyone = [u.to_dict() for u in db.session.scalars(db.select(User))]
    for sort, role in itertools.product(
            ("id", "-username", "role,-email", "-version", "active,updated_at"),
            (None, "admin")):
        listing = Listing(sort=sort, role=role, per_page=9)
        total = listing.count()
        expected = sorted((u for u in everyone if listing.matches(u)),
                          key=functools.cmp_to_key(listing.compare))
        assert total == len(expected) > 9
        for page in range(1, total // 9 + 3):
            offset = (page - 1) * 9
            ids = [u.id for u in Listing(sort=sort, role=role, page=page, per_page=9)
                   .rows(total=total)]
            assert ids == [u["id"] for u in expected[offset:offset + 9]], (sort, role, page)
        assert listing.rows(offset=total - 5, limit=20, total=total) == listing.rows(
            offset=total - 5, limit=20)
    assert Listing(role="admin", active=False).payloads(total=0) == []


@BOTH_DATABASES
def test_a_username_taken_in_another_case_is_found_by_the_index(app, make_user):
    """Each create, rename and revert checks the username in any case: an index search,
    not a scan of a million users."""
    seed(BIG // 5)
    taken = same_username("USER0001234")
    text_plan = plan(db.select(db.func.count()).select_from(User).where(taken))
    assert "ix_users_lower_username_id" in text_plan or ALSO_SORTS_BY["username"] in text_plan, \
        text_plan
    if db.engine.dialect.name == "sqlite":
        assert "SEARCH" in text_plan and "SCAN" not in text_plan, text_plan
    else:
        assert "Seq Scan" not in text_plan, text_plan
    bob = make_user("bob")
    with pytest.raises(DuplicateError) as error:
        update_user(bob, {"username": "useR0001234"}, bob.version)
    assert error.value.errors == {"username": ["This username is already taken."]}


@BOTH_DATABASES
def test_a_page_of_a_long_history_reads_the_index_in_order(app):
    """The history page of a user with many changes reads its page from the
    (user_id, cursor) index, newest first or oldest first, without sorting them all."""
    db.session.execute(text(
        "INSERT INTO user_changes (op, user_id, origin) "
        "SELECT 'update', 1 + n % 50, 'sql' FROM (SELECT 1 + a.x + 100 * b.x AS n FROM "
        "(SELECT 0 AS x" + "".join(f" UNION ALL SELECT {i}" for i in range(1, 100)) + ") a, "
        "(SELECT 0 AS x" + "".join(f" UNION ALL SELECT {i}" for i in range(1, 200)) + ") b) s"))
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    for newest_first, before in [(True, None), (True, 15_000), (False, None)]:
        text_plan = plan(history_query(7, before=before, limit=51, newest_first=newest_first))
        assert "ix_user_changes_user_id_cursor" in text_plan, text_plan
        assert "Sort" not in text_plan and "TEMP B-TREE" not in text_plan, text_plan
    assert len(changes_of(7, limit=51, newest_first=True)) == 51
