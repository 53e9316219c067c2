"""Chat messages in the database: saved once per client id, read back as history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.chat.rules import HISTORY_SIZE
from app.extensions import db
from app.models import ChatMessage, User, utcnow


def save_message(
    sender_id: int,
    text: str,
    *,
    room: str | None = None,
    recipient_id: int | None = None,
    client_id: str | None = None,
) -> tuple[ChatMessage, bool]:
    """Store a message; with a ``client_id`` already used by this sender, return that one.

    The second value is True only for a new message, which is the one to deliver.
    """
    if client_id is not None and (seen := _by_client_id(sender_id, client_id)):
        return seen, False
    message = ChatMessage(room=room, sender_id=sender_id, recipient_id=recipient_id,
                          text=text, client_id=client_id)
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


def room_history(room: str, limit: int = HISTORY_SIZE) -> list[ChatMessage]:
    """The room's last ``limit`` messages, oldest first."""
    rows = db.session.scalars(
        select(ChatMessage).where(ChatMessage.room == room)
        .order_by(ChatMessage.id.desc()).limit(limit)
    ).all()
    return list(reversed(rows))


def private_history(user_id: int, other_id: int, limit: int = HISTORY_SIZE) -> list[ChatMessage]:
    """The last ``limit`` private messages between two users, oldest first."""
    between = or_(
        and_(ChatMessage.sender_id == user_id, ChatMessage.recipient_id == other_id),
        and_(ChatMessage.sender_id == other_id, ChatMessage.recipient_id == user_id),
    )
    rows = db.session.scalars(
        select(ChatMessage).where(between).order_by(ChatMessage.id.desc()).limit(limit)
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
    """The active user with this name, else None."""
    user = db.session.scalar(select(User).filter_by(username=username))
    return user if user is not None and user.is_active else None
