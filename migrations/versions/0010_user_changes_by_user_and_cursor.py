"""A user's changes in cursor order from the index: history pages of a user with a
million changes read one page, not a million rows sorted.

The index on ``user_id`` alone gave PostgreSQL a user's changes in heap order, to be
sorted whole before the first page; ``(user_id, cursor)`` gives them in order, and still
serves every lookup by user id.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_user_changes_user_id_cursor", "user_changes", ["user_id", "cursor"])
    op.drop_index("ix_user_changes_user_id", table_name="user_changes")


def downgrade() -> None:
    op.create_index("ix_user_changes_user_id", "user_changes", ["user_id"])
    op.drop_index("ix_user_changes_user_id_cursor", table_name="user_changes")
