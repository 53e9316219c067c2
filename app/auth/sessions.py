"""Login sessions: one ``LoginSession`` row per login in a browser, named by its session
and remember-me cookies (``User.get_id``: the user id and a random key, of which the
database, the sockets' rooms and the message queue only ever see the SHA-256).

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

from flask import current_app, request
from flask_login import login_user
from flask_login.config import COOKIE_DURATION, COOKIE_NAME
from sqlalchemy import delete, or_, select, update

from app.extensions import db
from app.models import LoginSession, User, secret_digest, utcnow

# Digests looked up in one query by the sockets' sweep.
LOOKUP_BATCH = 500


def remembered() -> bool:
    """Whether this request's browser was logged in with "Remember me"."""
    return current_app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME) in request.cookies


def _lifetime(remember: bool) -> timedelta:
    if not remember:
        return current_app.permanent_session_lifetime
    duration = current_app.config.get("REMEMBER_COOKIE_DURATION", COOKIE_DURATION)
    return duration if isinstance(duration, timedelta) else timedelta(seconds=duration)


def start_session(user: User, remember: bool = False) -> bool:
    """Log ``user`` in, in a new login session; commits. False (nothing written) for an
    inactive user. Deletes the user's expired and ended sessions on the way, as the
    database has them: a password changed meanwhile keeps its new session."""
    if not user.is_active:
        return False
    lifetime = _lifetime(remember)
    now = utcnow()
    epoch_now = select(User.session_epoch).where(User.id == user.id).scalar_subquery()
    db.session.execute(delete(LoginSession).where(
        LoginSession.user_id == user.id,
        or_(LoginSession.expires_at <= now, LoginSession.epoch != epoch_now)))
    key = secrets.token_urlsafe(32)
    db.session.add(LoginSession(key_hash=secret_digest(key), user_id=user.id,
                                epoch=user.session_epoch, created_at=now,
                                expires_at=now + lifetime))
    db.session.commit()
    user.login_key = key
    return login_user(user, remember=remember, duration=lifetime)


def session_user(user_id: int, key: str) -> User | None:
    """The user of login session ``key``, if it has not ended."""
    user = db.session.scalar(
        select(User).join(LoginSession, LoginSession.user_id == User.id)
        .where(LoginSession.key_hash == secret_digest(key), User.id == user_id,
               LoginSession.epoch == User.session_epoch, LoginSession.expires_at > utcnow()))
    if user is not None:
        user.login_key = key
    return user


def live_digests(digests: Iterable[str]) -> set[str]:
    """Which of ``digests`` name login sessions that have not ended."""
    digests = sorted(set(digests))
    live: set[str] = set()
    for start in range(0, len(digests), LOOKUP_BATCH):
        live.update(db.session.scalars(
            select(LoginSession.key_hash).join(User, LoginSession.user_id == User.id)
            .where(LoginSession.key_hash.in_(digests[start:start + LOOKUP_BATCH]),
                   LoginSession.epoch == User.session_epoch,
                   LoginSession.expires_at > utcnow())))
    return live


def end_session(key: str) -> None:
    """End login session ``key`` (a logout); commits."""
    db.session.execute(delete(LoginSession).where(LoginSession.key_hash == secret_digest(key)))
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


def prune_sessions() -> int:
    """Delete the expired login sessions of every user; commits; returns how many.
    (A login deletes its own user's; this catches the users who never log in again.)"""
    count = db.session.execute(
        delete(LoginSession).where(LoginSession.expires_at <= utcnow())).rowcount
    db.session.commit()
    return count
