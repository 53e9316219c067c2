"""Changes per minute for the dashboard's chart, from ``change_minutes``: one row per
minute, kept by a trigger on user_changes (migration 0003), so the chart reads at most
60 rows however many changes there were."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from app.extensions import db
from app.models import ChangeMinute

HOUR = 60


def minute_of(at: datetime) -> int:
    """The minute ``change_minutes`` files a change made at ``at`` under."""
    return int(at.timestamp()) // 60


def per_minute(now: datetime) -> list[int]:
    """Changes in each of the last 60 minutes, oldest first; the last is ``now``'s."""
    current = minute_of(now)
    counts = [0] * HOUR
    rows = db.session.execute(
        select(ChangeMinute.minute, ChangeMinute.n)
        .where(ChangeMinute.minute > current - HOUR, ChangeMinute.minute <= current)
    )
    for minute, n in rows:
        counts[HOUR - 1 - (current - minute)] = n
    return counts


def prune_minutes(before_minute: int) -> int:
    """Delete the counts of minutes before ``before_minute`` (``minute_of`` the change
    log's retention cutoff); returns how many rows went. The caller commits."""
    result = db.session.execute(delete(ChangeMinute).where(ChangeMinute.minute < before_minute))
    return result.rowcount or 0
