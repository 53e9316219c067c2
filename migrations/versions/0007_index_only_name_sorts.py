"""Deep pages sorted by username or email read from the index alone.

An offset is answered by walking that many index entries; 0003's indexes on the folded
username and email made both databases visit every skipped row in the table too (a page
in the middle of a million users by username, PostgreSQL: 150 ms instead of 90).

- SQLite (3.40 reads no expression from an index): the index is on the column with the
  NOCASE collation, which folds ASCII letters only, as ``lower()`` does: the same order.
- PostgreSQL: the expression index also holds the column (an index-only scan needs it).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FOLDED_SORTS = ("username", "email")
# dialect: (0003's index, this revision's), the column's name for {0}
INDEXES = {
    "sqlite": ("(lower({0}), id)", "({0} COLLATE NOCASE, id)"),
    "postgresql": ('(lower(({0}) COLLATE "C"), id)', '(lower(({0}) COLLATE "C"), id) INCLUDE ({0})'),
}


def _rebuild(new: bool) -> None:
    old_index, new_index = INDEXES[op.get_bind().dialect.name]
    for column in FOLDED_SORTS:
        name = f"ix_users_lower_{column}_id"
        op.execute(f"DROP INDEX {name}")
        op.execute(f"CREATE INDEX {name} ON users {(new_index if new else old_index).format(column)}")


def upgrade() -> None:
    _rebuild(new=True)


def downgrade() -> None:
    _rebuild(new=False)
