"""Chat messages in the database: saved once per client id, read back as history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.chat.rules import HISTORY_SIZE
from app.chat.streams import next_seq, private_stream, room_stream
from app.extensions import db
from app.models import ChatMessage, ChatStream, User, utcnow
from app.users import service


def save_message(
    sender_id: int,
    text: str,
    *,
    room: str | None = None,
    recipient_id: int | None = None,
    client_id: str | None = None,
) -> tuple[ChatMessage, bool]:
    """Store a message; with a ``client_id`` already used by this sender, return that one.

    The second value is True only for a new message, which is the one to deliver. The
    message takes the next ``seq`` of its stream in the same transaction.
    """
    if client_id is not None and (seen := _by_client_id(sender_id, client_id)):
        return seen, False
    stream = room_stream(room) if room is not None else private_stream(sender_id, recipient_id)
    message = ChatMessage(room=room, sender_id=sender_id, recipient_id=recipient_id,
                          text=text, client_id=client_id, stream=stream,
                          seq=next_seq(stream))
    db.session.add(message)
    try:
        db.session.commit()
    except IntegrityError:
        # The same retry arrived twice at once: the unique constraint picked one.
        db.session.rollback()
        seen = _by_client_id(sender_id, client_id) if client_id is not None else None
        if seen is None:
            raise
        return seen, False
    return message, True


def _by_client_id(sender_id: int, client_id: str) -> ChatMessage | None:
    query = select(ChatMessage).filter_by(sender_id=sender_id, client_id=client_id)
    return db.session.scalar(query)


def room_history(room: str, limit: int = HISTORY_SIZE,
                 upto: int | None = None) -> list[ChatMessage]:
    """The room's last ``limit`` messages (up to ``seq`` ``upto``, when given), oldest first."""
    query = select(ChatMessage).where(ChatMessage.stream == room_stream(room))
    if upto is not None:
        query = query.where(ChatMessage.seq <= upto)
    rows = db.session.scalars(query.order_by(ChatMessage.seq.desc()).limit(limit)).all()
    return list(reversed(rows))


def after(stream: str, seq: int, limit: int = 500) -> list[ChatMessage]:
    """The stream's messages after ``seq``, in order (a gap to fill)."""
    return list(db.session.scalars(
        select(ChatMessage).where(ChatMessage.stream == stream, ChatMessage.seq > seq)
        .order_by(ChatMessage.seq).limit(limit)))


def heads(streams: Sequence[str]) -> dict[str, int]:
    """The last ``seq`` given in each of these streams (those that have one)."""
    if not streams:
        return {}
    rows = db.session.execute(
        select(ChatStream.key, ChatStream.last_seq).where(ChatStream.key.in_(streams)))
    return {key: last for key, last in rows}


def conversations_of(user_ids: Sequence[int], *, received_only: bool = False) -> dict[str, int]:
    """The last ``seq`` of every private conversation of these users (or of those where
    they received a message)."""
    if not user_ids:
        return {}
    whose = ChatMessage.recipient_id.in_(user_ids)
    if not received_only:
        whose = or_(whose, and_(ChatMessage.sender_id.in_(user_ids),
                                ChatMessage.recipient_id.is_not(None)))
    rows = db.session.execute(
        select(ChatMessage.stream, func.max(ChatMessage.seq)).where(whose)
        .group_by(ChatMessage.stream))
    return {stream: last for stream, last in rows}


def private_history(user_id: int, other_id: int, limit: int = HISTORY_SIZE) -> list[ChatMessage]:
    """The last ``limit`` private messages between two users, oldest first."""
    rows = db.session.scalars(
        select(ChatMessage).where(ChatMessage.stream == private_stream(user_id, other_id))
        .order_by(ChatMessage.seq.desc()).limit(limit)
    ).all()
    return list(reversed(rows))


def undelivered(user_id: int) -> list[ChatMessage]:
    """Private messages sent to ``user_id`` while nobody of theirs was connected."""
    return list(db.session.scalars(
        select(ChatMessage)
        .where(ChatMessage.recipient_id == user_id, ChatMessage.delivered_at.is_(None))
        .order_by(ChatMessage.id)
    ))


def mark_delivered(messages: Sequence[ChatMessage]) -> None:
    """Remember that these private messages reached their recipient."""
    if not messages:
        return
    db.session.execute(
        update(ChatMessage).where(ChatMessage.id.in_([m.id for m in messages]))
        .values(delivered_at=utcnow())
    )
    db.session.commit()


def user_named(username: str) -> User | None:
    """The active user with this name (in any case), else None."""
    user = service.user_named(username)
    return user if user is not None and user.is_active else None
