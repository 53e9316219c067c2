"""Never reuse a user id: a stale form or PATCH meant for a deleted user must not land on
a later one.

SQLite hands out the largest rowid + 1, so deleting the newest user gave its id to the
next one. ``users`` is rebuilt as AUTOINCREMENT (SQLite's documented twelve steps, not
Alembic's batch mode, which would drop the triggers and expression indexes of 0002 and
0003): foreign keys off, a new table, the rows copied, the old table dropped, the new one
renamed, and every index and trigger of users recreated from its stored SQL, in the order
they were made; the tokens' and chat messages' foreign keys name ``users`` and hold
again. ``sqlite_sequence`` starts above the largest id of users and of the change log,
so ids deleted before this migration are not handed out again either.

PostgreSQL's sequence never goes back, but an explicit id (plain SQL, a revert) above it
would later be handed out again: the sequence is moved above the largest id of users
and of the change log now, and after every insert that went past it.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
from sqlalchemy import event

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("id", "username", "email", "password_hash", "role", "active", "version",
           "created_at", "updated_at", "session_epoch")
# The table as 0001 and 0004 left it, but for the id's definition.
USERS_REST = """
    username VARCHAR(32) NOT NULL,
    email VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255),
    role VARCHAR(10) DEFAULT 'user' NOT NULL,
    active BOOLEAN DEFAULT '1' NOT NULL,
    version INTEGER DEFAULT '1' NOT NULL,
    created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
    updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
    session_epoch INTEGER DEFAULT '0' NOT NULL,{primary_key}
    CONSTRAINT ck_users_role CHECK (role IN ('admin', 'user')),
    UNIQUE (email),
    UNIQUE (username)
)"""
AUTOINCREMENT_USERS = ("CREATE TABLE users_new (\n    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,"
                       + USERS_REST.format(primary_key=""))
PLAIN_USERS = ("CREATE TABLE users_new (\n    id INTEGER NOT NULL,"
               + USERS_REST.format(primary_key="\n    PRIMARY KEY (id),"))
SEED_SEQUENCE = """INSERT INTO sqlite_sequence (name, seq) SELECT 'users', max(m) FROM (
    SELECT max(id) AS m FROM users UNION ALL SELECT max(user_id) FROM user_changes
    UNION ALL SELECT 0)"""

PG_FLOOR = """SELECT setval(pg_get_serial_sequence('users', 'id'), top) FROM (
    SELECT GREATEST((SELECT max(id) FROM users), (SELECT max(user_id) FROM user_changes)) AS top
) AS t WHERE top > COALESCE(pg_sequence_last_value(pg_get_serial_sequence('users', 'id')), 0)"""
PG_UP = [
    PG_FLOOR,
    # Writers of users are serialized (0002's advisory lock): no nextval runs between
    # the read of the sequence and setval. 0009 ends that and moves the sequence under a
    # lock of its own.
    """CREATE FUNCTION users_id_floor() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        seq text := pg_get_serial_sequence('users', 'id');
        top bigint;
    BEGIN
        SELECT max(id) INTO top FROM new_rows;
        IF top > COALESCE(pg_sequence_last_value(seq), 0) THEN
            PERFORM setval(seq, top);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER users_id_floor AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION users_id_floor()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS users_id_floor ON users",
    "DROP FUNCTION IF EXISTS users_id_floor()",
]


def _foreign_keys_off() -> None:
    """Turn SQLite's foreign keys off for this connection until it goes back to the pool:
    with them on, DROP TABLE users would delete every token and chat message
    (ON DELETE CASCADE). SQLite ignores the pragma inside a transaction."""
    bind = op.get_bind()
    if not bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        return
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("0005 rebuilds users with foreign keys off, which SQLite cannot "
                           "do inside a transaction: run it with transaction_per_migration")

    def restore(dbapi_connection, connection_record) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    event.listen(bind.engine, "checkin", restore, once=True)


def rebuild_users(create_sql: str) -> None:
    """Replace users by the table ``create_sql`` makes (named users_new), keeping its
    rows, indexes and triggers; in one transaction."""
    bind = op.get_bind()
    _foreign_keys_off()
    bind.exec_driver_sql("BEGIN")  # the driver would run each DDL statement on its own
    attached = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'users' AND type IN ('index', "
        "'trigger') AND sql IS NOT NULL ORDER BY rowid").scalars().all()
    columns = ", ".join(COLUMNS)
    for statement in (
        create_sql,
        f"INSERT INTO users_new ({columns}) SELECT {columns} FROM users",
        "DROP TABLE users",
        "ALTER TABLE users_new RENAME TO users",
        *attached,
    ):
        bind.exec_driver_sql(statement)
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"rebuilding users broke foreign keys: {broken[:5]}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        rebuild_users(AUTOINCREMENT_USERS)
        op.execute("DELETE FROM sqlite_sequence WHERE name = 'users'")
        op.execute(SEED_SEQUENCE)
    else:
        for statement in PG_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        rebuild_users(PLAIN_USERS)  # dropping the AUTOINCREMENT table drops its sequence
    else:
        for statement in PG_DOWN:
            op.execute(statement)
