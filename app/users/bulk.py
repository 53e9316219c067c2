"""Bulk actions on a set of users: all or nothing, in one transaction, with the
last-admin rule applied to the whole set.

Set-based statements (each change still logged by the triggers, versions bumped by
them), so a bulk of thousands costs a few statements, not one per user.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update

from app.database import lock_checked_writes
from app.extensions import db
from app.inputs import MAX_INT
from app.live.capture import core_writes
from app.models import ROLES, User
from app.users.service import LastAdminError, ServiceError, UserError

ACTIONS = ("activate", "deactivate", "delete", "set_role")
CHUNK = 500  # ids per statement: far below SQLite's bound-parameter limit


class MissingUsersError(ServiceError):
    """Some ids name no user (HTTP 404); ``missing`` lists them."""

    status = 404

    def __init__(self, missing: list[int]) -> None:
        super().__init__(f"no user with id {', '.join(map(str, missing[:20]))}"
                         + (" ..." if len(missing) > 20 else ""))
        self.missing = missing

    def details(self) -> dict[str, Any]:
        return {"missing": self.missing}


def check_request(data: dict[str, Any]) -> tuple[list[int], str, str | None]:
    """``(ids, action, role)`` of a bulk request's body; UserError naming each bad key."""
    ids, action, role = data.get("ids"), data.get("action"), data.get("role")
    errors: dict[str, list[str]] = {}
    if not isinstance(ids, list) or not ids or not all(
            type(i) is int and 1 <= i <= MAX_INT for i in ids):
        errors["ids"] = ["Required: a non-empty list of user ids."]
    if action not in ACTIONS:
        errors["action"] = [f"Must be one of: {', '.join(ACTIONS)}."]
    if action == "set_role" and role not in ROLES:
        errors["role"] = [f"set_role needs a role: {' or '.join(ROLES)}."]
    elif action != "set_role" and role is not None:
        errors["role"] = ["Only set_role takes a role."]
    if unknown := sorted(set(data) - {"ids", "action", "role"}):
        errors["_schema"] = [f"Unknown field(s): {', '.join(unknown)}."]
    if errors:
        raise UserError(errors)
    return ids, action, role


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start:start + CHUNK])


def _removes_admins(action: str, role: str | None) -> bool:
    return action in ("deactivate", "delete") or (action == "set_role" and role != "admin")


def bulk_action(ids: Sequence[int], action: str, role: str | None = None) -> int:
    """Apply ``action`` to every user of ``ids`` and commit; returns how many ids.

    Raises MissingUsersError (nothing changed) when an id names no user, LastAdminError
    when no active admin would be left. The caller validates ``action`` and ``role``.
    """
    assert action in ACTIONS and (action != "set_role" or role in ROLES)
    wanted = sorted(set(ids))
    lock_checked_writes()  # before looking: no other checked write between check and write
    found: set[int] = set()
    admins_in_set = False
    for chunk in _chunks(wanted):
        for user_id, is_admin in db.session.execute(select(
                User.id, (User.role == "admin") & User.active.is_(True)
        ).where(User.id.in_(chunk))):
            found.add(user_id)
            admins_in_set = admins_in_set or bool(is_admin)
    if missing := [i for i in wanted if i not in found]:
        db.session.rollback()
        raise MissingUsersError(missing)
    if admins_in_set and _removes_admins(action, role) and not _admin_outside(wanted):
        db.session.rollback()
        raise LastAdminError()
    try:
        with core_writes():
            for chunk in _chunks(wanted):
                db.session.execute(_statement(action, role, User.__table__.c.id.in_(chunk)))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    db.session.expire_all()
    return len(wanted)


def _admin_outside(ids: list[int]) -> bool:
    """Whether an active admin outside ``ids`` exists."""
    inside = set(ids)
    query = select(User.id).where(User.role == "admin", User.active.is_(True))
    return any(user_id not in inside for user_id in db.session.scalars(query))


def _statement(action: str, role: str | None, selected: ColumnElement[bool]):
    """The statement for one chunk; rows already as wanted are left alone (no change).
    On the table, not the ORM entity: the triggers bump each version."""
    users = User.__table__
    if action == "delete":
        return delete(users).where(selected)
    if action == "activate":
        return update(users).where(selected, users.c.active.is_(False)).values(active=True)
    if action == "deactivate":
        # As update_user: reactivated later, the user starts with no session alive.
        return update(users).where(selected, users.c.active.is_(True)).values(
            active=False, session_epoch=users.c.session_epoch + 1)
    return update(users).where(selected, users.c.role != role).values(role=role)
