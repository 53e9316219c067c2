"""Capture the writes that bypassed the change log: PostgreSQL's TRUNCATE users, and
SQLite's INSERT OR REPLACE under recursive triggers.

PostgreSQL: TRUNCATE fires no row trigger. A statement-level BEFORE TRUNCATE trigger
logs a ``delete`` for every row, with its row before, as a DELETE would (so the change
stream, the live views and the closing of deleted users' sockets work unchanged;
0003's AFTER TRUNCATE trigger already empties user_counts). An AFTER TRUNCATE trigger
puts the id sequence back where it was when ``RESTART IDENTITY`` reset it: ids are never
reused (0005).

SQLite: the app's connections turn ``recursive_triggers`` on, so that a row INSERT OR
REPLACE deletes fires the delete triggers. Under recursive triggers, 0002's update
trigger fired again for its own version bump and logged the change twice; it now marks
the bump (a ``change_context`` row with the user's negated id, there only while the bump
runs) and skips it, with the pragma on or off.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
SQLITE_ACTOR = "(SELECT actor FROM change_context WHERE id = 1)"
SQLITE_ORIGIN = "COALESCE((SELECT origin FROM change_context WHERE id = 1), 'sql')"
SQLITE_COLUMNS = "(op, user_id, row_after, row_before, actor, origin, created_at)"
SQLITE_CHANGED = """OLD.username IS NOT NEW.username OR OLD.email IS NOT NEW.email
      OR OLD.password_hash IS NOT NEW.password_hash OR OLD.role IS NOT NEW.role
      OR OLD.active IS NOT NEW.active OR OLD.version IS NOT NEW.version"""


def _sqlite_json(alias: str) -> str:
    return (
        f"json_object('id', {alias}.id, 'username', {alias}.username, 'email', {alias}.email, "
        f"'role', {alias}.role, 'active', json(CASE WHEN {alias}.active THEN 'true' ELSE 'false' END), "
        f"'version', {alias}.version, 'created_at', {alias}.created_at, 'updated_at', {alias}.updated_at)"
    )


SQLITE_LOG_UPDATE = f"""INSERT INTO user_changes {SQLITE_COLUMNS}
        SELECT 'update', u.id, {_sqlite_json('u')}, {_sqlite_json('OLD')},
               {SQLITE_ACTOR}, {SQLITE_ORIGIN}, {SQLITE_NOW}
        FROM users u WHERE u.id = NEW.id;"""
SQLITE_UP = [
    "DROP TRIGGER users_change_update",
    f"""CREATE TRIGGER users_change_update AFTER UPDATE ON users
    WHEN ({SQLITE_CHANGED})
      AND NOT EXISTS (SELECT 1 FROM change_context WHERE id = -NEW.id)
    BEGIN
        INSERT INTO change_context (id) SELECT -NEW.id WHERE NEW.version = OLD.version;
        UPDATE users SET version = OLD.version + 1, updated_at = {SQLITE_NOW}
        WHERE id = NEW.id AND NEW.version = OLD.version;
        DELETE FROM change_context WHERE id = -NEW.id;
        {SQLITE_LOG_UPDATE}
    END""",
]
# 0002's trigger, as it was.
SQLITE_DOWN = [
    "DROP TRIGGER users_change_update",
    f"""CREATE TRIGGER users_change_update AFTER UPDATE ON users
    WHEN {SQLITE_CHANGED}
    BEGIN
        UPDATE users SET version = OLD.version + 1, updated_at = {SQLITE_NOW}
        WHERE id = NEW.id AND NEW.version = OLD.version;
        {SQLITE_LOG_UPDATE}
    END""",
]

ID_SEQUENCE = "livecrud.users_id_before_truncate"
PG_UP = [
    f"""CREATE FUNCTION users_change_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(7461832);  -- cursors in commit order, as in 0002
        INSERT INTO user_changes (op, user_id, row_after, row_before, actor, origin, created_at)
        SELECT 'delete', u.id, NULL, (to_jsonb(u) - 'password_hash')::json,
               NULLIF(current_setting('livecrud.actor', true), ''),
               COALESCE(NULLIF(current_setting('livecrud.origin', true), ''), 'sql'), now()
        FROM users AS u ORDER BY u.id;
        PERFORM set_config('{ID_SEQUENCE}', COALESCE(
            pg_sequence_last_value(pg_get_serial_sequence('users', 'id')), 0)::text, true);
        PERFORM pg_notify('user_changes', 'truncate');
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER users_change_truncate BEFORE TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION users_change_truncate()""",
    f"""CREATE FUNCTION users_id_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        seq text := pg_get_serial_sequence('users', 'id');
        top bigint := GREATEST(
            NULLIF(current_setting('{ID_SEQUENCE}', true), '')::bigint,
            (SELECT max(user_id) FROM user_changes));
    BEGIN
        IF top > COALESCE(pg_sequence_last_value(seq), 0) THEN
            PERFORM setval(seq, top);  -- TRUNCATE ... RESTART IDENTITY reset it
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER users_id_after_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION users_id_after_truncate()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS users_id_after_truncate ON users",
    "DROP TRIGGER IF EXISTS users_change_truncate ON users",
    "DROP FUNCTION IF EXISTS users_id_after_truncate()",
    "DROP FUNCTION IF EXISTS users_change_truncate()",
]


def _run(statements: dict[str, list[str]]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in statements:
        raise NotImplementedError(f"0006 supports sqlite and postgresql, not {dialect}")
    for statement in statements[dialect]:
        op.execute(statement)


def upgrade() -> None:
    _run({"sqlite": SQLITE_UP, "postgresql": PG_UP})


def downgrade() -> None:
    _run({"sqlite": SQLITE_DOWN, "postgresql": PG_DOWN})
