"""Chat streams: a room, or the private conversation of two users, numbered 1, 2, 3...

``next_seq`` runs in the message's own transaction: the upsert locks the stream's row
until the commit, so writers of one stream (in any process) take their numbers one
after the other and commit in that order. Whoever reads ``seq`` N therefore also finds
every lower number of the stream (unless its sender was deleted since, with the message).
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import ChatStream

UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def room_stream(room: str) -> str:
    return f"r:{room}"


def private_stream(one: int, other: int) -> str:
    """The conversation of two users, whoever writes."""
    low, high = sorted((one, other))
    return f"p:{low}:{high}"


def private_parties(stream: str) -> tuple[int, int] | None:
    """The two user ids of a conversation's stream; None for a room."""
    if not stream.startswith("p:"):
        return None
    low, high = stream[2:].split(":")
    return int(low), int(high)


def next_seq(stream: str) -> int:
    """Take the stream's next number (inside the caller's transaction)."""
    insert = UPSERTS[db.session.get_bind().dialect.name](ChatStream)
    statement = insert.values(key=stream, last_seq=1).on_conflict_do_update(
        index_elements=[ChatStream.key], set_={"last_seq": ChatStream.last_seq + 1},
    ).returning(ChatStream.last_seq)
    return db.session.execute(statement).scalar_one()
