"""Chat messages numbered per room and per private conversation (their "stream").

Every message gets ``stream`` ("r:<room>" or "p:<low user id>:<high user id>") and
``seq``, 1, 2, 3... within its stream; ``chat_streams`` holds each stream's last number,
taken by an upsert in the message's own transaction, so that writers of one stream queue
on its row and commit in ``seq`` order (a reader who sees ``seq`` N sees every lower one).
Existing messages are numbered in ``id`` order.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LOW_HIGH = {"sqlite": ("min", "max"), "postgresql": ("LEAST", "GREATEST")}


def upgrade() -> None:
    op.create_table(
        "chat_streams",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.add_column(sa.Column("stream", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))

    low, high = LOW_HIGH[op.get_bind().dialect.name]
    op.execute(
        "UPDATE chat_messages SET stream = CASE WHEN room IS NOT NULL THEN 'r:' || room "
        f"ELSE 'p:' || CAST({low}(sender_id, recipient_id) AS VARCHAR) || ':' || "
        f"CAST({high}(sender_id, recipient_id) AS VARCHAR) END"
    )
    op.execute(
        "UPDATE chat_messages SET seq = (SELECT n FROM (SELECT id, ROW_NUMBER() OVER "
        "(PARTITION BY stream ORDER BY id) AS n FROM chat_messages) numbered "
        "WHERE numbered.id = chat_messages.id)"
    )
    op.execute("INSERT INTO chat_streams (key, last_seq) "
               "SELECT stream, MAX(seq) FROM chat_messages GROUP BY stream")
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.alter_column("stream", existing_type=sa.String(length=80), nullable=False)
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_index("ix_chat_messages_stream_seq", ["stream", "seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch_op:
        batch_op.drop_index("ix_chat_messages_stream_seq")
        batch_op.drop_column("seq")
        batch_op.drop_column("stream")
    op.drop_table("chat_streams")
