"""Creating, changing and deleting users: the rules every writer (pages, API, CLI) shares."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Update, bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.elements import ColumnElement

from app.collation import ascii_order, fold
from app.database import lock_checked_writes
from app.extensions import db
from app.inputs import MAX_INT
from app.live.capture import core_writes
from app.models import ROLES, USER_FIELDS, User, hash_password, user_payload, utcnow

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")  # the whole name: fullmatch
EDITABLE = ("username", "email", "password", "role", "active")


class ServiceError(Exception):
    """A write the rules refuse. Each kind carries its HTTP ``status`` and a short
    ``message``; ``str()`` says it in full. Mapped once for the API (JSON with
    ``details()``), the pages and the CLI (``app.errors``, ``app.cli``)."""

    status = 500

    def __init__(self, text: str, message: str | None = None) -> None:
        super().__init__(text)
        self.message = message or text

    def details(self) -> dict[str, Any]:
        """Fields the API's JSON answer carries next to ``error``."""
        return {}


class UserError(ServiceError):
    """Bad input: ``errors`` maps each field to its messages (HTTP 400)."""

    status = 400

    def __init__(self, errors: dict[str, list[str]], message: str = "invalid input"):
        super().__init__("; ".join(f"{f}: {' '.join(m)}" for f, m in errors.items()), message)
        self.errors = errors

    def details(self) -> dict[str, Any]:
        return {"errors": self.errors}


class DuplicateError(UserError):
    """The username or email is taken (HTTP 409)."""

    status = 409

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors, "username or email already taken")


class StaleVersionError(ServiceError):
    """The user changed since the client saw it; ``current`` is the user as it is now
    (HTTP 409, with the user)."""

    status = 409

    def __init__(self, current: User):
        super().__init__(
            f"user {current.id} changed since you loaded it (now version {current.version})"
        )
        self.current = current

    def details(self) -> dict[str, Any]:
        # The user's fields at the top level and under ``current``: clients may read
        # "409 with the current user" either way.
        current = self.current.to_dict()
        return {**current, "current": current}


class UserGoneError(ServiceError, LookupError):
    """The user was deleted while it was being changed (HTTP 404)."""

    status = 404

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} was deleted")


class LastAdminError(ServiceError):
    """The change would leave no active admin (HTTP 409)."""

    status = 409

    def __init__(self) -> None:
        super().__init__("the last active admin cannot be deactivated, demoted or deleted")


def validate(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check and normalise user fields; raise UserError with every problem found.

    With ``partial`` only the given fields are checked (for updates); otherwise
    username, email and password are required.
    """
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    unknown = sorted(set(data) - set(EDITABLE))
    if unknown:
        errors["_schema"] = [f"Unknown field(s): {', '.join(unknown)}."]
    required = () if partial else ("username", "email", "password")
    for field in required:
        if data.get(field) in (None, ""):
            errors.setdefault(field, []).append("This field is required.")

    if "username" in data and field_ok(errors, "username", data["username"], str):
        if not USERNAME_RE.fullmatch(data["username"]):
            errors["username"] = ["3 to 32 letters, digits, '_', '.' or '-'."]
        else:
            clean["username"] = data["username"]
    if "email" in data and field_ok(errors, "email", data["email"], str):
        try:
            clean["email"] = validate_email(
                data["email"], check_deliverability=False
            ).normalized.lower()
        except EmailNotValidError as exc:
            errors["email"] = [str(exc)]
    if "password" in data and field_ok(errors, "password", data["password"], str):
        if len(data["password"]) < 8:
            errors["password"] = ["At least 8 characters."]
        elif len(data["password"]) > 1024:
            errors["password"] = ["At most 1024 characters."]
        else:
            clean["password"] = data["password"]
    if "role" in data and field_ok(errors, "role", data["role"], str):
        if data["role"] not in ROLES:
            errors["role"] = ["Must be 'admin' or 'user'."]
        else:
            clean["role"] = data["role"]
    if "active" in data and field_ok(errors, "active", data["active"], bool):
        clean["active"] = data["active"]
    if errors:
        raise UserError(errors)
    return clean


def field_ok(errors: dict[str, list[str]], field: str, value: Any, kind: type) -> bool:
    """Record a type error for ``field`` unless ``value`` is a ``kind``."""
    if value is None or value == "":
        if field not in errors:
            errors[field] = ["This field is required."]
        return False
    if not isinstance(value, kind):
        errors[field] = [f"Must be a {'string' if kind is str else 'boolean'}."]
        return False
    return True


def create_user(data: dict[str, Any]) -> User:
    """Validate ``data`` and create the user; commits."""
    clean = validate(data)
    _check_unique(clean)
    user = User(
        username=clean["username"],
        email=clean["email"],
        role=clean.get("role", "user"),
        active=clean.get("active", True),
    )
    user.set_password(clean["password"])
    db.session.add(user)
    _commit()
    return user


def update_user(user: User, data: dict[str, Any], expected_version: int | None, *,
                always: bool = False) -> User:
    """``change_user`` for a loaded ``user`` (pages, CLI, history); its attributes show
    the new values at their next access."""
    change_user(user.id, data, expected_version, always=always)
    db.session.expire(user)
    return user


def change_user(user_id: int, data: dict[str, Any], expected_version: int | None, *,
                always: bool = False) -> dict[str, Any]:
    """Apply the given fields to the user if it is still at ``expected_version`` (None:
    any); commits; returns the user as payloads show it.

    One UPDATE that checks the version and writes every given field; the user is read
    first only when the change could take away an admin. A change that alters nothing
    writes nothing (unless ``always``: a revert is one new change even then). Raises
    StaleVersionError when the stored user moved on, UserGoneError when it is gone.
    A deactivation closes the user's connections on every process at once (the queue);
    each process's live feed also does when it sees the change (the fallback).
    """
    clean = validate(data, partial=True)
    try:
        _check_unique(clean, exclude_id=user_id)
    except DuplicateError:
        _stored(user_id, expected_version)  # a stale version is said first
        raise
    if clean.get("role", "admin") != "admin" or clean.get("active", True) is False:
        current = db.session.execute(_ADMIN_STATE, {"id": user_id}).first()
        if current is not None and current.role == "admin" and current.active:
            _ensure_other_admin(user_id)
    values = {f: clean[f] for f in ("username", "email", "role", "active") if f in clean}
    if "password" in clean:
        values["password_hash"] = hash_password(clean["password"])
    row = None
    bindable = expected_version is None or abs(expected_version) <= MAX_INT
    if bindable and (values or always):
        statement = _update_statement(tuple(values), expected_version is not None,
                                      compare=not always and "password" not in clean,
                                      deactivates=clean.get("active") is False)
        params = {f"new_{f}": v for f, v in values.items()}
        try:
            with core_writes():
                row = db.session.connection().execute(statement, {
                    **params, "user_id": user_id, "expected": expected_version,
                    "now": utcnow()}).first()
        except IntegrityError as exc:  # a concurrent writer took the name or email
            raise _duplicate(exc) from None
    if row is None:  # moved on, gone, or nothing to change
        return _stored(user_id, expected_version).to_dict()
    _commit()
    if clean.get("active") is False:
        _disconnect(user_id)
    return user_payload(row._mapping)


def _stored(user_id: int, expected_version: int | None) -> User:
    """The user as stored now (after a rollback); StaleVersionError when it moved on from
    ``expected_version``, UserGoneError when it is gone."""
    db.session.rollback()
    user = db.session.get(User, user_id, populate_existing=True)
    if user is None:
        raise UserGoneError(user_id)
    if expected_version is not None and user.version != expected_version:
        raise StaleVersionError(user)
    return user


@cache
def _update_statement(fields: tuple[str, ...], versioned: bool, *, compare: bool,
                      deactivates: bool) -> Update:
    """``change_user``'s UPDATE for one kind of change, built once (the API's PATCH runs
    one per request): it sets ``fields`` (from the parameters ``new_<field>``), moves the
    version on and, for a deactivation or a new password, the session epoch; it matches
    only at version ``expected`` (``versioned``) and, with ``compare``, only when a field
    changes. RETURNING the user as payloads show it."""
    statement = update(User).where(User.id == bindparam("user_id"))
    if versioned:
        statement = statement.where(User.version == bindparam("expected"))
    if compare:
        statement = statement.where(or_(*(getattr(User, f).is_distinct_from(
            bindparam(f"new_{f}")) for f in fields)))
    epoch = User.session_epoch
    if deactivates:  # reactivated later, it starts with no session alive
        epoch = epoch + case((User.active, 1), else_=0)
    if "password_hash" in fields:  # a new password ends every session made with the old one
        epoch = epoch + 1
    return statement.values({
        **{f: bindparam(f"new_{f}") for f in fields},
        "session_epoch": epoch, "version": User.version + 1, "updated_at": bindparam("now"),
    }).returning(*(getattr(User, field) for field in USER_FIELDS))


_ADMIN_STATE = select(User.role, User.active).where(User.id == bindparam("id"))


def delete_user(user: User, expected_version: int | None = None) -> None:
    """Delete ``user`` unless it is the last active admin; commits.

    With ``expected_version`` (the delete page's), a user that moved on since is a
    StaleVersionError. Without (the API, the CLI), if the row changed meanwhile the
    newest row is deleted (its rules checked again). Already gone: UserGoneError.
    The user's connections close on every process, as for a deactivation.
    """
    if expected_version is not None and expected_version != user.version:
        raise StaleVersionError(user)
    user_id = user.id
    for _ in range(2):
        if user.role == "admin" and user.active:
            _ensure_other_admin(user.id)
        db.session.delete(user)
        try:
            _commit()
            _disconnect(user_id)
            return
        except StaleDataError:
            db.session.rollback()
            user = db.session.get(User, user_id)
            if user is None:
                raise UserGoneError(user_id) from None
            if expected_version is not None:
                raise StaleVersionError(user) from None
    raise StaleVersionError(user)


def _ensure_other_admin(user_id: int) -> None:
    # Locked before looking: two admins demoting each other at once then run one after
    # the other, the second sees the first's change, and neither deadlocks on the
    # other's row.
    lock_checked_writes()
    others = db.session.scalars(
        select(User.id)
        .where(User.role == "admin", User.active.is_(True), User.id != user_id)
    ).all()
    if not others:
        raise LastAdminError()


# Whether another user has the username (any case) or the email: built once, as every
# create and rename runs them. ``exclude`` is the user being changed (-1: none).
_TAKEN = {
    "username": ascii_order(User.username) == bindparam("value"),
    "email": User.email == bindparam("value"),
}
_TAKEN_QUERIES = {field: select(func.count()).select_from(User).where(
    condition, User.id != bindparam("exclude")) for field, condition in _TAKEN.items()}


def _check_unique(clean: dict[str, Any], exclude_id: int | None = None) -> None:
    errors: dict[str, list[str]] = {}
    for field in ("username", "email"):
        if field not in clean:
            continue
        value = fold(clean[field]) if field == "username" else clean[field]
        exclude = -1 if exclude_id is None else exclude_id
        if db.session.scalar(_TAKEN_QUERIES[field], {"value": value, "exclude": exclude}):
            errors[field] = [f"This {field} is already taken."]
    if errors:
        raise DuplicateError(errors)


def same_username(username: str) -> ColumnElement[bool]:
    """The users whose username is ``username`` in any case (usernames are ASCII), as
    the username sort index finds them: no scan of the table."""
    return ascii_order(User.username) == fold(username)


def user_named(username: str) -> User | None:
    """The user called ``username`` in any case (logins, tokens, the CLI, chat)."""
    return db.session.scalar(select(User).where(same_username(username)))


def _disconnect(user_id: int) -> None:
    """Close the user's connections on every process (after a deactivation or delete)."""
    from app.auth.sockets import disconnect_everywhere  # app.auth imports this module

    disconnect_everywhere(user_id)


def _commit() -> None:
    """Commit; a unique constraint hit by a concurrent writer is a DuplicateError."""
    try:
        db.session.commit()
    except IntegrityError as exc:
        raise _duplicate(exc) from None


def _duplicate(exc: IntegrityError) -> DuplicateError:
    """The DuplicateError of a unique constraint's refusal (after a rollback): the
    constraints and indexes on usernames and emails are named for their column (read
    from PostgreSQL's diagnostics, whose message also quotes the value)."""
    db.session.rollback()
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None) or str(exc.orig)
    field = "email" if "email" in name.lower() else "username"
    return DuplicateError({field: [f"This {field} is already taken."]})
