"""A user's history from the change log, and revert: "make the user as it was after
this change", which also brings a deleted user back with the same id."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.live.capture import core_writes
from app.live.changelog import WATCHED_FIELDS
from app.models import User, UserChange, parse_timestamp, utcnow
from app.users.service import (
    DuplicateError,
    ServiceError,
    same_username,
    update_user,
    validate,
)


class NoSuchChangeError(ServiceError):
    """Nothing to show or revert to: no such change of that user in the log (HTTP 404)."""

    status = 404


class _Raced(Exception):
    """Another writer restored the user first."""


def changes_of(user_id: int, *, after: int = 0, before: int | None = None,
               limit: int | None = None, newest_first: bool = False) -> list[UserChange]:
    """The user's retained changes with ``after < cursor < before`` (the user may be
    deleted), oldest first or ``newest_first``, at most ``limit`` of them."""
    return list(db.session.scalars(history_query(user_id, after, before, limit, newest_first)))


def history_query(user_id: int, after: int = 0, before: int | None = None,
                  limit: int | None = None, newest_first: bool = False) -> Select:
    """``changes_of``'s query: a page of it is read in order from the (user_id, cursor)
    index, whatever the length of the history."""
    query = select(UserChange).where(UserChange.user_id == user_id, UserChange.cursor > after)
    if before is not None:
        query = query.where(UserChange.cursor < before)
    query = query.order_by(UserChange.cursor.desc() if newest_first else UserChange.cursor)
    return query if limit is None else query.limit(limit)


def has_changes(user_id: int) -> bool:
    """Whether the change log holds anything of the user."""
    return db.session.scalar(select(UserChange.cursor).where(
        UserChange.user_id == user_id).limit(1)) is not None


def revert(user_id: int, cursor: int, expected_version: int | None = None) -> User:
    """Make the user's watched fields what they were right after change ``cursor`` (an
    insert or update of that user); commits one new change, whatever differs.

    A deleted user is inserted again with its id and the next version, without a
    password (the log keeps no hash). Errors: NoSuchChangeError, DuplicateError,
    LastAdminError, StaleVersionError, UserError (values plain SQL wrote that the field
    rules refuse).
    """
    change = db.session.get(UserChange, cursor)
    if change is None or change.user_id != user_id or change.op == "delete" \
            or not change.row_after:
        raise NoSuchChangeError(f"no insert or update of user {user_id} at cursor {cursor}")
    wanted = {field: change.row_after[field] for field in WATCHED_FIELDS}
    wanted["active"] = bool(wanted["active"])
    for _ in range(2):  # a restore raced by another restore is an update the second time
        user = db.session.get(User, user_id)
        if user is not None:
            diff = {f: v for f, v in wanted.items() if getattr(user, f) != v}
            return update_user(user, diff, expected_version, always=True)  # one new change
        try:
            return _restore(user_id, wanted, change.row_after)
        except _Raced:
            continue
    raise NoSuchChangeError(f"user {user_id} changed while it was being reverted")


def _restore(user_id: int, wanted: dict[str, Any], row: dict[str, Any]) -> User:
    clean = validate(dict(wanted), partial=True)
    _check_free(clean)
    last = db.session.scalar(select(func.max(UserChange.cursor)).where(
        UserChange.user_id == user_id, UserChange.op == "delete"))
    gone = db.session.get(UserChange, last).row_before if last else None
    version = int((gone or row).get("version") or 0) + 1
    now = utcnow()
    values = {
        "id": user_id, **clean, "version": version, "password_hash": None,
        # Not 0: a session cookie of the deleted user must not come back to life with it.
        "session_epoch": secrets.randbelow(2**30) + 2**20,
        "created_at": parse_timestamp(row.get("created_at")) or now, "updated_at": now,
    }
    try:
        with core_writes():
            db.session.execute(insert(User.__table__).values(**values))
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        if db.session.get(User, user_id) is not None:
            raise _Raced() from None
        field = "email" if "email" in str(exc.orig).lower() else "username"
        raise DuplicateError({field: [f"This {field} is already taken."]}) from None
    db.session.expire_all()
    return db.session.get(User, user_id)


def _check_free(clean: dict[str, Any]) -> None:
    """DuplicateError when another user has the username (any case) or the email."""
    errors: dict[str, list[str]] = {}
    if db.session.scalar(select(User.id).where(same_username(clean["username"]))):
        errors["username"] = [f"The username {clean['username']} is taken now."]
    if db.session.scalar(select(User.id).where(User.email == clean["email"])):
        errors["email"] = [f"The email {clean['email']} is taken now."]
    if errors:
        raise DuplicateError(errors)
