"""Ending a user's login sessions: the session names the user's epoch (``User.get_id``),
so moving the epoch on ends every session made before, copied cookies included."""

from __future__ import annotations

from sqlalchemy import update

from app.extensions import db
from app.models import User


def end_sessions(user_id: int) -> None:
    """End every login session of ``user_id``; commits.

    A plain UPDATE of a column the change-capture triggers ignore: no new version, no
    change in the log.
    """
    db.session.execute(
        update(User).where(User.id == user_id)
        .values(session_epoch=User.session_epoch + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
