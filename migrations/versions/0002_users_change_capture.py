"""Capture every change of users in user_changes, whoever writes it.

Triggers record each insert, update and delete in the same transaction as the write,
with the row after and before it. An update that does not set a new version (plain
SQL) gets one, so optimistic locking sees every change.

PostgreSQL: a statement-level BEFORE trigger takes a transaction-scoped advisory lock,
so writers of users commit one after the other and cursors are assigned in commit
order: a reader that has seen cursor N can never later see a smaller one commit (0009
takes the lock at commit instead, when it writes the change).
Each change also sends NOTIFY user_changes, which wakes the followers at once.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Six fraction digits, as SQLAlchemy writes SQLite timestamps.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"


def _sqlite_json(alias: str) -> str:
    return (
        f"json_object('id', {alias}.id, 'username', {alias}.username, 'email', {alias}.email, "
        f"'role', {alias}.role, 'active', json(CASE WHEN {alias}.active THEN 'true' ELSE 'false' END), "
        f"'version', {alias}.version, 'created_at', {alias}.created_at, 'updated_at', {alias}.updated_at)"
    )


SQLITE_ACTOR = "(SELECT actor FROM change_context WHERE id = 1)"
SQLITE_ORIGIN = "COALESCE((SELECT origin FROM change_context WHERE id = 1), 'sql')"
SQLITE_COLUMNS = "(op, user_id, row_after, row_before, actor, origin, created_at)"

SQLITE_UP = [
    f"""CREATE TRIGGER users_change_insert AFTER INSERT ON users BEGIN
        INSERT INTO user_changes {SQLITE_COLUMNS}
        SELECT 'insert', u.id, {_sqlite_json('u')}, NULL, {SQLITE_ACTOR}, {SQLITE_ORIGIN}, {SQLITE_NOW}
        FROM users u WHERE u.id = NEW.id;
    END""",
    f"""CREATE TRIGGER users_change_update AFTER UPDATE ON users
    WHEN OLD.username IS NOT NEW.username OR OLD.email IS NOT NEW.email
      OR OLD.password_hash IS NOT NEW.password_hash OR OLD.role IS NOT NEW.role
      OR OLD.active IS NOT NEW.active OR OLD.version IS NOT NEW.version
    BEGIN
        UPDATE users SET version = OLD.version + 1, updated_at = {SQLITE_NOW}
        WHERE id = NEW.id AND NEW.version = OLD.version;
        INSERT INTO user_changes {SQLITE_COLUMNS}
        SELECT 'update', u.id, {_sqlite_json('u')}, {_sqlite_json('OLD')},
               {SQLITE_ACTOR}, {SQLITE_ORIGIN}, {SQLITE_NOW}
        FROM users u WHERE u.id = NEW.id;
    END""",
    f"""CREATE TRIGGER users_change_delete AFTER DELETE ON users BEGIN
        INSERT INTO user_changes {SQLITE_COLUMNS}
        VALUES ('delete', OLD.id, NULL, {_sqlite_json('OLD')}, {SQLITE_ACTOR}, {SQLITE_ORIGIN}, {SQLITE_NOW});
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS users_change_insert",
    "DROP TRIGGER IF EXISTS users_change_update",
    "DROP TRIGGER IF EXISTS users_change_delete",
]

PG_UP = [
    """CREATE FUNCTION users_change_lock() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(7461832);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER users_change_lock BEFORE INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION users_change_lock()""",
    """CREATE FUNCTION users_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.version = OLD.version
           AND ROW(NEW.username, NEW.email, NEW.password_hash, NEW.role, NEW.active)
               IS DISTINCT FROM ROW(OLD.username, OLD.email, OLD.password_hash, OLD.role, OLD.active)
        THEN
            NEW.version := OLD.version + 1;
            NEW.updated_at := now();
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER users_bump_version BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_bump_version()""",
    """CREATE FUNCTION users_change_log() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        new_cursor bigint;
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.version = OLD.version
           AND ROW(NEW.username, NEW.email, NEW.password_hash, NEW.role, NEW.active)
               IS NOT DISTINCT FROM ROW(OLD.username, OLD.email, OLD.password_hash, OLD.role, OLD.active)
        THEN
            RETURN NULL;
        END IF;
        INSERT INTO user_changes (op, user_id, row_after, row_before, actor, origin, created_at)
        VALUES (
            lower(TG_OP),
            CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE (to_jsonb(NEW) - 'password_hash')::json END,
            CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE (to_jsonb(OLD) - 'password_hash')::json END,
            NULLIF(current_setting('livecrud.actor', true), ''),
            COALESCE(NULLIF(current_setting('livecrud.origin', true), ''), 'sql'),
            now()
        ) RETURNING cursor INTO new_cursor;
        PERFORM pg_notify('user_changes', new_cursor::text);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER users_change_log AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_change_log()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS users_change_log ON users",
    "DROP TRIGGER IF EXISTS users_bump_version ON users",
    "DROP TRIGGER IF EXISTS users_change_lock ON users",
    "DROP FUNCTION IF EXISTS users_change_log()",
    "DROP FUNCTION IF EXISTS users_bump_version()",
    "DROP FUNCTION IF EXISTS users_change_lock()",
]


def _run(statements: dict[str, list[str]]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in statements:
        raise NotImplementedError(f"change capture supports sqlite and postgresql, not {dialect}")
    for statement in statements[dialect]:
        op.execute(statement)


def upgrade() -> None:
    _run({"sqlite": SQLITE_UP, "postgresql": PG_UP})


def downgrade() -> None:
    _run({"sqlite": SQLITE_DOWN, "postgresql": PG_DOWN})
