"""How many users there are, from ``user_counts``: a handful of rows kept by triggers
(migration 0003), so no count ever reads the users table, whatever its size."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import UserCount


def table_counts() -> dict[str, int]:
    """The dashboard's totals: every user, the active ones and the active admins."""
    counts = {"total": 0, "active": 0, "admins": 0}
    for row in db.session.execute(select(UserCount.role, UserCount.active, UserCount.n)):
        counts["total"] += row.n
        if row.active:
            counts["active"] += row.n
            if row.role == "admin":
                counts["admins"] += row.n
    return counts


def count_where(role: str | None, active: bool | None) -> int:
    """How many users have this role and this active flag (None: any), as
    ``Listing(role=role, active=active).count()`` would say without a search."""
    query = select(func.coalesce(func.sum(UserCount.n), 0))
    if role is not None:
        query = query.where(UserCount.role == role)
    if active is not None:
        query = query.where(UserCount.active.is_(active))
    return int(db.session.scalar(query) or 0)
