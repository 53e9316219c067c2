"""Login sessions: one ``LoginSession`` row per login in a browser, named by its session
and remember-me cookies (``User.get_id``: the user id and the row's random key).

Logging out deletes the row: that session ends, a copied cookie too, while the user's
other sessions and API tokens go on. Moving the user's ``session_epoch`` on (a new
password, a deactivation, "log out everywhere") ends every session at once. A session
lasts at most ``PERMANENT_SESSION_LIFETIME`` (``REMEMBER_COOKIE_DURATION`` with
"Remember me").
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from flask import current_app
from flask_login import login_user
from flask_login.config import COOKIE_DURATION
from sqlalchemy import and_, delete, or_, select, update

from app.extensions import db
from app.models import LoginSession, User, utcnow

# Keys looked up in one query by the sockets' sweep.
LOOKUP_BATCH = 500


def start_session(user: User, remember: bool = False) -> None:
    """Log ``user`` in, in a new login session; commits. Deletes the expired sessions
    and the user's ended ones on the way."""
    config = current_app.config
    lifetime: timedelta = (config.get("REMEMBER_COOKIE_DURATION", COOKIE_DURATION)
                           if remember else config["PERMANENT_SESSION_LIFETIME"])
    now = utcnow()
    db.session.execute(delete(LoginSession).where(or_(
        LoginSession.expires_at <= now,
        and_(LoginSession.user_id == user.id, LoginSession.epoch != user.session_epoch))))
    user.login_key = secrets.token_urlsafe(32)
    db.session.add(LoginSession(key=user.login_key, user_id=user.id, epoch=user.session_epoch,
                                created_at=now, expires_at=now + lifetime))
    db.session.commit()
    login_user(user, remember=remember, duration=lifetime)


def session_user(user_id: int, key: str) -> User | None:
    """The user of login session ``key``, if it has not ended."""
    user = db.session.scalar(
        select(User).join(LoginSession, LoginSession.user_id == User.id)
        .where(LoginSession.key == key, User.id == user_id,
               LoginSession.epoch == User.session_epoch, LoginSession.expires_at > utcnow()))
    if user is not None:
        user.login_key = key
    return user


def live_keys(keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` name login sessions that have not ended."""
    keys = sorted(set(keys))
    live: set[str] = set()
    for start in range(0, len(keys), LOOKUP_BATCH):
        live.update(db.session.scalars(
            select(LoginSession.key).join(User, LoginSession.user_id == User.id)
            .where(LoginSession.key.in_(keys[start:start + LOOKUP_BATCH]),
                   LoginSession.epoch == User.session_epoch,
                   LoginSession.expires_at > utcnow())))
    return live


def end_session(key: str) -> None:
    """End login session ``key`` (a logout); commits."""
    db.session.execute(delete(LoginSession).where(LoginSession.key == key))
    db.session.commit()


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
    db.session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
    db.session.commit()
