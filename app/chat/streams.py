"""Chat streams: a room, or the private conversation of two users, numbered 1, 2, 3...

``next_seq`` runs in the message's own transaction: the upsert locks the stream's row
until the commit, so writers of one stream (in any process) take their numbers one
after the other and commit in that order. Whoever reads ``seq`` N therefore also finds
every lower number of the stream (unless its sender was deleted since, with the message).
``Stream`` is what one process delivered of a stream (``app.chat.relay``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import ChatMessage, ChatStream

RECENT_IDS = 256
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


Envelope = dict[str, Any]  # {"stream", "recipient_id", "message": the payload}


def envelope(message: ChatMessage) -> Envelope:
    """A message as processes pass it around: its payload and where it goes."""
    return {"stream": message.stream, "recipient_id": message.recipient_id,
            "message": message.to_dict()}


@dataclass(eq=False)
class Stream:
    """What this process delivered of one stream."""

    last: int | None  # None while its head is being read
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_IDS))
    early: dict[int, Envelope] = field(default_factory=dict)  # seq -> not yet deliverable
    # The private messages among them that reached a socket of their recipient here.
    reached: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_IDS))
    opening: int = 0  # joins in progress (the stream is not pruned meanwhile)
    lock: threading.Lock = field(default_factory=threading.Lock)
