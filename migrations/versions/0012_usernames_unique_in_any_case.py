"""Usernames unique in any case, in the database: the app's check before a write let two
concurrent creates of "Ann" and "ann" both commit on PostgreSQL.

The index is on the same folded username the sorts use (ASCII letters only: ``NOCASE``
on SQLite, ``lower(... COLLATE "C")`` on PostgreSQL). An upgrade stops, naming them,
when usernames that differ only in case exist: rename one of each first.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FOLDED = {"sqlite": "username COLLATE NOCASE", "postgresql": 'lower((username) COLLATE "C")'}


def upgrade() -> None:
    folded = FOLDED[op.get_bind().dialect.name]
    clashes = op.get_bind().execute(sa.text(
        f"SELECT {folded} AS name, count(*) FROM users GROUP BY {folded} HAVING count(*) > 1"
        " ORDER BY 1 LIMIT 20")).all()
    if clashes:
        names = ", ".join(f"{name} ({count} users)" for name, count in clashes)
        raise RuntimeError(f"usernames that differ only in case: {names}; rename all but "
                           "one of each (edit page, PATCH /api/users/<id>), then upgrade again")
    op.execute(f"CREATE UNIQUE INDEX uq_users_username_folded ON users ({folded})")


def downgrade() -> None:
    op.execute("DROP INDEX uq_users_username_folded")
