"""Session epochs: a login session names its user's epoch; logging out or changing the
password moves the epoch on, so every session made before stops working.

Not a watched column: the change-capture triggers ignore it (no change is logged, the
version does not move).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("session_epoch", sa.Integer(), server_default="0",
                                     nullable=False))


def downgrade() -> None:
    # Not a batch operation: rebuilding the SQLite table would drop its triggers and
    # expression indexes. SQLite has dropped columns in place since 3.35.
    op.execute("ALTER TABLE users DROP COLUMN session_epoch")
