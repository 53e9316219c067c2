"""Keep the users list fast at a million rows: sort indexes, substring search, counts.

- One index per sort of the listing, each with the id tie (a backward scan serves the
  descending sort). Usernames and emails sort by the expression app/collation.py
  compiles: ``lower(x)`` on SQLite, ``lower((x) COLLATE "C")`` on PostgreSQL.
- Substring search without a full scan. SQLite: an FTS5 trigram table over username and
  email, external content (the rows stay in users), kept by triggers. PostgreSQL:
  pg_trgm GIN indexes on the same lowered expressions, which serve ``LIKE '%needle%'``.
- ``user_counts``: how many users per (role, active), kept by triggers, so the
  dashboard's totals do not count a million rows. PostgreSQL uses statement triggers
  with transition tables: one write per statement, however many rows it changes
  (0009: writers of users are no longer serialized; those that change counts queue on
  the user_counts rows they change, locked in order).
- ``change_minutes``: changes per minute (unix seconds // 60), kept by a trigger on
  user_changes, for the dashboard's chart.

The expressions are written out here rather than imported from the app: a migration
must keep creating what it created when it was written.

On downgrade pg_trgm stays installed: other objects of the database may use it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PLAIN_SORTS = ("role", "active", "version", "created_at", "updated_at")
FOLDED_SORTS = ("username", "email")
FOLD = {"sqlite": "lower({})", "postgresql": 'lower(({}) COLLATE "C")'}

COUNTS_TABLE = """CREATE TABLE user_counts (
    role VARCHAR(10) NOT NULL,
    active BOOLEAN NOT NULL,
    n INTEGER NOT NULL,
    CONSTRAINT pk_user_counts PRIMARY KEY (role, active)
)"""
MINUTES_TABLE = """CREATE TABLE change_minutes (
    minute BIGINT NOT NULL,
    n INTEGER NOT NULL,
    CONSTRAINT pk_change_minutes PRIMARY KEY (minute)
)"""
FILL_COUNTS = """INSERT INTO user_counts (role, active, n)
    SELECT role, active, count(*) FROM users GROUP BY role, active"""

# created_at is the text SQLite triggers write; "now" only if it were ever unparsable.
SQLITE_MINUTE = "CAST(COALESCE(strftime('%s', {0}), strftime('%s', 'now')) AS INTEGER) / 60"
PG_MINUTE = "floor(extract(epoch FROM {0}) / 60)::bigint"
# Transaction-local settings: the minute being counted and its changes not yet written.
PENDING_MINUTE = "livecrud.pending_minute"
PENDING_N = "livecrud.pending_changes"


def _sqlite_count(sign: str, alias: str) -> str:
    return (
        f"INSERT INTO user_counts (role, active, n) VALUES ({alias}.role, {alias}.active, {sign}1)"
        f" ON CONFLICT (role, active) DO UPDATE SET n = n {sign} 1;"
    )


SQLITE_UP = [
    "CREATE VIRTUAL TABLE users_fts USING fts5(username, email, content='users', "
    "content_rowid='id', tokenize='trigram')",
    "INSERT INTO users_fts (users_fts) VALUES ('rebuild')",
    """CREATE TRIGGER users_fts_insert AFTER INSERT ON users BEGIN
        INSERT INTO users_fts (rowid, username, email) VALUES (NEW.id, NEW.username, NEW.email);
    END""",
    """CREATE TRIGGER users_fts_delete AFTER DELETE ON users BEGIN
        INSERT INTO users_fts (users_fts, rowid, username, email)
        VALUES ('delete', OLD.id, OLD.username, OLD.email);
    END""",
    """CREATE TRIGGER users_fts_update AFTER UPDATE OF id, username, email ON users BEGIN
        INSERT INTO users_fts (users_fts, rowid, username, email)
        VALUES ('delete', OLD.id, OLD.username, OLD.email);
        INSERT INTO users_fts (rowid, username, email) VALUES (NEW.id, NEW.username, NEW.email);
    END""",
    COUNTS_TABLE,
    FILL_COUNTS,
    f"""CREATE TRIGGER user_counts_insert AFTER INSERT ON users BEGIN
        {_sqlite_count('+', 'NEW')}
    END""",
    f"""CREATE TRIGGER user_counts_delete AFTER DELETE ON users BEGIN
        {_sqlite_count('-', 'OLD')}
    END""",
    f"""CREATE TRIGGER user_counts_update AFTER UPDATE OF role, active ON users
    WHEN OLD.role IS NOT NEW.role OR OLD.active IS NOT NEW.active BEGIN
        {_sqlite_count('-', 'OLD')}
        {_sqlite_count('+', 'NEW')}
    END""",
    MINUTES_TABLE,
    f"""INSERT INTO change_minutes (minute, n)
        SELECT {SQLITE_MINUTE.format('created_at')}, count(*) FROM user_changes GROUP BY 1""",
    f"""CREATE TRIGGER change_minutes_insert AFTER INSERT ON user_changes BEGIN
        INSERT INTO change_minutes (minute, n) VALUES ({SQLITE_MINUTE.format('NEW.created_at')}, 1)
        ON CONFLICT (minute) DO UPDATE SET n = n + 1;
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS change_minutes_insert",
    "DROP TABLE IF EXISTS change_minutes",
    "DROP TRIGGER IF EXISTS user_counts_update",
    "DROP TRIGGER IF EXISTS user_counts_delete",
    "DROP TRIGGER IF EXISTS user_counts_insert",
    "DROP TABLE IF EXISTS user_counts",
    "DROP TRIGGER IF EXISTS users_fts_update",
    "DROP TRIGGER IF EXISTS users_fts_delete",
    "DROP TRIGGER IF EXISTS users_fts_insert",
    "DROP TABLE IF EXISTS users_fts",
]

PG_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    *(
        f"CREATE INDEX ix_users_{column}_trgm ON users "
        f"USING gin ({FOLD['postgresql'].format(column)} gin_trgm_ops)"
        for column in FOLDED_SORTS
    ),
    COUNTS_TABLE,
    FILL_COUNTS,
    # One upsert per (role, active) a statement touched, from its transition tables;
    # an update that changes neither nets to zero and writes nothing.
    """CREATE FUNCTION user_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO user_counts (role, active, n)
            SELECT role, active, count(*) FROM new_rows GROUP BY role, active
            ON CONFLICT (role, active) DO UPDATE SET n = user_counts.n + EXCLUDED.n;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO user_counts (role, active, n)
            SELECT role, active, -count(*) FROM old_rows GROUP BY role, active
            ON CONFLICT (role, active) DO UPDATE SET n = user_counts.n + EXCLUDED.n;
        ELSE
            INSERT INTO user_counts (role, active, n)
            SELECT role, active, sum(k) FROM (
                SELECT role, active, 1 AS k FROM new_rows
                UNION ALL
                SELECT role, active, -1 FROM old_rows
            ) AS delta GROUP BY role, active HAVING sum(k) <> 0
            ON CONFLICT (role, active) DO UPDATE SET n = user_counts.n + EXCLUDED.n;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER user_counts_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_counts_apply()""",
    """CREATE TRIGGER user_counts_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_counts_apply()""",
    """CREATE TRIGGER user_counts_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_counts_apply()""",
    """CREATE FUNCTION user_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM user_counts;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER user_counts_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION user_counts_truncate()""",
    MINUTES_TABLE,
    f"""INSERT INTO change_minutes (minute, n)
        SELECT {PG_MINUTE.format('created_at')}, count(*) FROM user_changes GROUP BY 1""",
    # Not one upsert per change: a transaction that updates the same row of
    # change_minutes N times leaves N versions its own lookups must walk (quadratic: a
    # 100k-row UPDATE of users took minutes). Each change adds to a transaction-local
    # count instead (rolled back with its savepoint, like the change itself), and a
    # deferred trigger adds that count to change_minutes at commit, once.
    f"""CREATE FUNCTION change_minutes_flush_pending() RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        pending integer := COALESCE(NULLIF(current_setting('{PENDING_N}', true), ''), '0')::integer;
    BEGIN
        IF pending > 0 THEN
            INSERT INTO change_minutes (minute, n)
            VALUES (current_setting('{PENDING_MINUTE}')::bigint, pending)
            ON CONFLICT (minute) DO UPDATE SET n = change_minutes.n + EXCLUDED.n;
            PERFORM set_config('{PENDING_N}', '0', true);
        END IF;
    END $$""",
    """CREATE FUNCTION change_minutes_flush() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM change_minutes_flush_pending();
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION change_minutes_count() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        this_minute bigint := {PG_MINUTE.format('NEW.created_at')};
    BEGIN
        IF current_setting('{PENDING_MINUTE}', true) IS DISTINCT FROM this_minute::text THEN
            PERFORM change_minutes_flush_pending();  -- another minute: settle the last one
            PERFORM set_config('{PENDING_MINUTE}', this_minute::text, true);
        END IF;
        PERFORM set_config('{PENDING_N}', (COALESCE(NULLIF(current_setting('{PENDING_N}', true),
                           ''), '0')::integer + 1)::text, true);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER change_minutes_count AFTER INSERT ON user_changes
    FOR EACH ROW EXECUTE FUNCTION change_minutes_count()""",
    # Fires for every change at commit; the first one writes, the others find nothing.
    """CREATE CONSTRAINT TRIGGER change_minutes_flush AFTER INSERT ON user_changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION change_minutes_flush()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS change_minutes_flush ON user_changes",
    "DROP TRIGGER IF EXISTS change_minutes_count ON user_changes",
    "DROP FUNCTION IF EXISTS change_minutes_count()",
    "DROP FUNCTION IF EXISTS change_minutes_flush_pending()",
    "DROP FUNCTION IF EXISTS change_minutes_flush()",
    "DROP TABLE IF EXISTS change_minutes",
    "DROP TRIGGER IF EXISTS user_counts_truncate ON users",
    "DROP TRIGGER IF EXISTS user_counts_delete ON users",
    "DROP TRIGGER IF EXISTS user_counts_update ON users",
    "DROP TRIGGER IF EXISTS user_counts_insert ON users",
    "DROP FUNCTION IF EXISTS user_counts_truncate()",
    "DROP FUNCTION IF EXISTS user_counts_apply()",
    "DROP TABLE IF EXISTS user_counts",
    *(f"DROP INDEX IF EXISTS ix_users_{column}_trgm" for column in FOLDED_SORTS),
]


def _dialect() -> str:
    dialect = op.get_bind().dialect.name
    if dialect not in FOLD:
        raise NotImplementedError(f"0003 supports sqlite and postgresql, not {dialect}")
    return dialect


def upgrade() -> None:
    dialect = _dialect()
    for column in FOLDED_SORTS:
        op.execute(f"CREATE INDEX ix_users_lower_{column}_id ON users "
                   f"({FOLD[dialect].format(column)}, id)")
    for column in PLAIN_SORTS:
        op.create_index(f"ix_users_{column}_id", "users", [column, "id"])
    for statement in {"sqlite": SQLITE_UP, "postgresql": PG_UP}[dialect]:
        op.execute(statement)


def downgrade() -> None:
    dialect = _dialect()
    for statement in {"sqlite": SQLITE_DOWN, "postgresql": PG_DOWN}[dialect]:
        op.execute(statement)
    for column in PLAIN_SORTS:
        op.drop_index(f"ix_users_{column}_id", table_name="users")
    for column in FOLDED_SORTS:
        op.execute(f"DROP INDEX IF EXISTS ix_users_lower_{column}_id")
