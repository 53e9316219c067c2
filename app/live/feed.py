"""The change feed: the current cursor, reading changes, and the follower task."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import UserChange


def current_cursor() -> int:
    """The newest cursor in the change log (0 when empty).

    Read it *before* the data a page renders: the page then subscribes from it, and
    any change made in between is replayed rather than lost.
    """
    return db.session.scalar(select(func.coalesce(func.max(UserChange.cursor), 0))) or 0
