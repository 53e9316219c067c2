"""A user's changes in cursor order from the index: history pages of a user with a
million changes read one page, not a million rows sorted.

The index on ``user_id`` alone gave PostgreSQL a user's changes in heap order, to be
sorted whole before the first page; ``(user_id, cursor)`` gives them in order, and still
serves every lookup by user id. PostgreSQL builds it CONCURRENTLY: every write of users
inserts into the change log, and a plain CREATE INDEX would hold them all up for as long
as it reads a long log.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _swap(new: str, columns: list[str], old: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(new, "user_changes", columns)
        op.drop_index(old, table_name="user_changes")
        return
    with op.get_context().autocommit_block():
        op.create_index(new, "user_changes", columns, postgresql_concurrently=True)
        op.drop_index(old, table_name="user_changes", postgresql_concurrently=True)


def upgrade() -> None:
    _swap("ix_user_changes_user_id_cursor", ["user_id", "cursor"], "ix_user_changes_user_id")


def downgrade() -> None:
    _swap("ix_user_changes_user_id", ["user_id"], "ix_user_changes_user_id_cursor")
