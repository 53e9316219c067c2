"""PostgreSQL: take the change log's ordering lock at commit, not at the first write.

0002 took advisory lock 7461832 in a BEFORE STATEMENT trigger and held it to the end of
the transaction, across the app's round trip to COMMIT: every write of users in the
cluster waited for the one before to commit. The change row is now written by a deferred
constraint trigger, at commit, which takes the lock first: cursors are still handed out
in commit order (a follower that has read cursor N never later sees a smaller one
commit), but a transaction holds the lock only while it commits. Deferred row events
fire in the order of their events, each with its own OLD and NEW, so one transaction's
changes keep their order (an update then a delete of a row log just that).

What this changes, and for what relied on writers of users queueing from statement to
commit:

- ``users_bump_version`` (BEFORE ROW) stays immediate: the app's version check sees it.
- A change's ``created_at`` (its ``at``) is the moment it is logged, at commit
  (``clock_timestamp()``), no longer its transaction's start (``now()``): as on SQLite,
  it says when the change happened, not when its writer began (for a PATCH, its token
  lookup; for a long transaction, long before).
- Actor and origin (``livecrud.actor``, ``livecrud.origin``, transaction-local) are read
  at commit: a transaction that changes them between writes logs every change with the
  last ones. The app sets them once per transaction.
- The change rows do not exist before COMMIT, not even for the transaction's own reads.
  Nothing in the app reads its own change before committing.
- A transaction with writes of users not yet logged cannot TRUNCATE or ALTER users
  (PostgreSQL: "pending trigger events"); ``SET CONSTRAINTS users_change_log IMMEDIATE``
  first logs them, with the lock held from then on. TRUNCATE keeps 0006's trigger: it
  takes ACCESS EXCLUSIVE before its BEFORE trigger, so no other writer of users is left
  to order it against, and the lock it takes there still orders it among commits.
- 0003's ``user_counts`` upserts take the row lock of each (role, active) they change
  until commit: writes that change counts (inserts, deletes, role or active) still queue
  on that row, writes of other fields do not. One statement locks its rows in (role,
  active) order now, so two single-statement writes cannot deadlock on them; two
  transactions of several such statements, in opposite orders, may (PostgreSQL then
  aborts one). The app's multi-statement writers (bulk, CSV import) take the app's lock
  (app/database.py) and queue.
- 0003's ``change_minutes`` flush runs at commit after the change rows, so still under
  the lock: its row locks are only ever taken with 7461832 held.
- 0005's ``users_id_floor`` read the sequence and moved it, relying on no other writer in
  between: two inserts of explicit ids above the sequence could move it down again. The
  move is now made under advisory lock 7461834, taken only when the sequence must move
  (plain SQL inserting an id above it), and checked again under it. Inserts taking ids
  from the sequence do not take that lock: one that hands out every id up to the new
  floor between that check and setval would see the sequence set back below its id.
- The app's checks (the last admin, bulk, CSV import) took 7461832 to see no other writer
  between check and write; now a transaction that took it early, then waited for a row
  lock of a writer that waits for it at commit, would deadlock. They take their own lock,
  7461833 (``app.database.CHECKED_WRITES_LOCK``), which keeps them from each other.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHANGE_COLUMNS = "INSERT INTO user_changes (op, user_id, row_after, row_before, actor, origin, created_at)"
CHANGE_VALUES = """VALUES (
            lower(TG_OP),
            CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE (to_jsonb(NEW) - 'password_hash')::json END,
            CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE (to_jsonb(OLD) - 'password_hash')::json END,
            NULLIF(current_setting('livecrud.actor', true), ''),
            COALESCE(NULLIF(current_setting('livecrud.origin', true), ''), 'sql'),
            {at}
        ) RETURNING cursor INTO new_cursor;"""
NO_OP_UPDATE = """IF TG_OP = 'UPDATE' AND NEW.version = OLD.version
           AND ROW(NEW.username, NEW.email, NEW.password_hash, NEW.role, NEW.active)
               IS NOT DISTINCT FROM ROW(OLD.username, OLD.email, OLD.password_hash, OLD.role, OLD.active)
        THEN
            RETURN NULL;
        END IF;"""


def _change_log(lock: str, at: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION users_change_log() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        new_cursor bigint;
    BEGIN
        {NO_OP_UPDATE}{lock}
        {CHANGE_COLUMNS}
        {CHANGE_VALUES.format(at=at)}
        PERFORM pg_notify('user_changes', new_cursor::text);
        RETURN NULL;
    END $$"""


def _counts_apply(order: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION user_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO user_counts (role, active, n)
            SELECT role, active, count(*) FROM new_rows GROUP BY role, active{order}
            ON CONFLICT (role, active) DO UPDATE SET n = user_counts.n + EXCLUDED.n;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO user_counts (role, active, n)
            SELECT role, active, -count(*) FROM old_rows GROUP BY role, active{order}
            ON CONFLICT (role, active) DO UPDATE SET n = user_counts.n + EXCLUDED.n;
        ELSE
            INSERT INTO user_counts (role, active, n)
            SELECT role, active, sum(k) FROM (
                SELECT role, active, 1 AS k FROM new_rows
                UNION ALL
                SELECT role, active, -1 FROM old_rows
            ) AS delta GROUP BY role, active HAVING sum(k) <> 0{order}
            ON CONFLICT (role, active) DO UPDATE SET n = user_counts.n + EXCLUDED.n;
        END IF;
        RETURN NULL;
    END $$"""


def _id_floor(move: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION users_id_floor() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        seq text := pg_get_serial_sequence('users', 'id');
        top bigint;
    BEGIN
        SELECT max(id) INTO top FROM new_rows;
        IF top > COALESCE(pg_sequence_last_value(seq), 0) THEN
            {move}
        END IF;
        RETURN NULL;
    END $$"""


PG_UP = [
    "DROP TRIGGER users_change_log ON users",
    "DROP TRIGGER users_change_lock ON users",
    "DROP FUNCTION users_change_lock()",
    _change_log("\n        PERFORM pg_advisory_xact_lock(7461832);  -- cursors in commit order",
                "clock_timestamp()"),
    """CREATE CONSTRAINT TRIGGER users_change_log AFTER INSERT OR UPDATE OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION users_change_log()""",
    _counts_apply("\n            ORDER BY role, active"),
    _id_floor("""PERFORM pg_advisory_xact_lock(7461834);  -- one mover at a time
            IF top > COALESCE(pg_sequence_last_value(seq), 0) THEN
                PERFORM setval(seq, top);
            END IF;"""),
]
# 0002's, 0003's and 0005's, as they were.
PG_DOWN = [
    _id_floor("PERFORM setval(seq, top);"),
    _counts_apply(""),
    "DROP TRIGGER users_change_log ON users",
    _change_log("", "now()"),
    """CREATE FUNCTION users_change_lock() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(7461832);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER users_change_lock BEFORE INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION users_change_lock()""",
    """CREATE TRIGGER users_change_log AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_change_log()""",
]


def _run(statements: list[str]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return  # one writer at a time anyway: SQLite's write lock
    if dialect != "postgresql":
        raise NotImplementedError(f"0009 supports sqlite and postgresql, not {dialect}")
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    _run(PG_UP)


def downgrade() -> None:
    _run(PG_DOWN)
