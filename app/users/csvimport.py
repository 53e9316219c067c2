"""CSV import of users: every line validated first, then all written in one transaction.

Columns (a header line names them, in any order): ``username`` and ``email`` required;
``id``, ``role``, ``active``, ``password`` and ``version`` optional; the export's other
columns are ignored, so an export imports back. A line with an ``id`` updates that user
(it must exist; with a ``version``, only if the user is still at it); a line without
updates the user of that username (ignoring ASCII case), else creates one (without a
password when none is given: that user cannot log in until one is set).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.database import lock_checked_writes
from app.extensions import db
from app.models import User
from app.users.csvio import csv_text
from app.users.service import UserError, validate

COLUMNS = ("id", "username", "email", "role", "active", "password", "version")
IGNORED = ("created_at", "updated_at")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
MAX_ERRORS = 100


@dataclass
class ImportResult:
    """What an import did, or the per-line errors that stopped it (nothing written)."""

    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Line:
    number: int
    user: User | None
    clean: dict[str, Any]
    version: int | None


def import_csv(content: str) -> ImportResult:
    """Validate every line of ``content``; when all are good, write them and commit."""
    result = ImportResult()
    reader = csv.DictReader(io.StringIO(content))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in COLUMNS + IGNORED]
    if not header or "username" not in header or "email" not in header or unknown:
        result.errors.append((1, "the header must name username and email, and only "
                              f"these columns: {', '.join(COLUMNS + IGNORED)}"
                              + (f" (unknown: {', '.join(unknown)})" if unknown else "")))
        return result
    lines: list[_Line] = []
    seen: dict[tuple[str, str], int] = {}
    for record in reader:
        number = reader.line_num
        try:
            line = _check(number, record, seen)
        except ValueError as exc:
            result.errors.append((number, str(exc)))
            if len(result.errors) >= MAX_ERRORS:
                break
            continue
        lines.append(line)
    if not lines and not result.errors:
        result.errors.append((1, "the file has no lines after the header"))
    _check_against_table(lines, result)
    result.errors.sort()
    if result.errors:
        db.session.rollback()
        return result
    _write(lines, result)
    return result


def _check(number: int, record: dict[str, Any], seen: dict[tuple[str, str], int]) -> _Line:
    """One line's fields, checked alone and against the lines before it."""
    if None in record:
        raise ValueError("more values than the header has columns")
    values = {k: (v or "").strip() for k, v in record.items() if k in COLUMNS}
    for name in ("username", "email"):  # an export's apostrophe before formula-like text
        values[name] = csv_text(values.get(name, ""))
    data: dict[str, Any] = {k: values[k] for k in ("username", "email", "role", "password")
                            if values.get(k)}
    for required in ("username", "email"):
        data.setdefault(required, "")
    if values.get("active"):
        if values["active"].lower() not in BOOLEANS:
            raise ValueError("active must be true or false")
        data["active"] = BOOLEANS[values["active"].lower()]
    try:
        clean = validate(data, partial=True)
    except UserError as exc:
        raise ValueError("; ".join(f"{f}: {' '.join(m)}" for f, m in exc.errors.items())) \
            from None
    user_id = _integer(values.get("id"), "id")
    version = _integer(values.get("version"), "version")
    user = None
    if user_id is not None:
        user = db.session.get(User, user_id)
        if user is None:
            raise ValueError(f"no user with id {user_id} (leave id empty to create one)")
    else:
        user = db.session.scalar(select(User).where(
            func.lower(User.username) == clean["username"].lower()))
    keys = [("username", clean["username"].lower()), ("email", clean["email"])]
    if user is not None:
        keys.append(("id", str(user.id)))
    for key in keys:
        if key in seen:
            raise ValueError(f"the same {key[0]} as line {seen[key]}")
    for key in keys:
        seen[key] = number
    if user is not None and version is not None and version != user.version:
        raise ValueError(f"user {user.id} changed since (now version {user.version})")
    return _Line(number, user, clean, version)


def _integer(raw: str | None, name: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        raise ValueError(f"{name} must be a positive integer")
    return int(raw)


def _check_against_table(lines: list[_Line], result: ImportResult) -> None:
    """A username or email of another user, not changed by the file, is taken."""
    mine = {line.user.id for line in lines if line.user is not None}
    for line in lines:
        own = line.user.id if line.user is not None else None
        for name in ("username", "email"):
            column = getattr(User, name)
            value = line.clean[name]
            match = func.lower(column) == value.lower() if name == "username" \
                else column == value
            other = db.session.scalar(select(User.id).where(match, User.id != own)
                                      if own is not None else select(User.id).where(match))
            if other is not None and other not in mine:
                result.errors.append((line.number, f"{name}: {value} is taken by user "
                                                   f"{other}"))


def _write(lines: list[_Line], result: ImportResult) -> None:
    """Apply every line and commit; the last-admin rule holds for the whole file."""
    lock_checked_writes()
    admins_before = _active_admins()
    for line in lines:
        user = line.user
        if user is None:
            user = User(username=line.clean["username"], email=line.clean["email"],
                        role=line.clean.get("role", "user"),
                        active=line.clean.get("active", True))
            db.session.add(user)
            result.created += 1
        else:
            if user.active and line.clean.get("active") is False:
                user.session_epoch += 1
            for name in ("username", "email", "role", "active"):
                if name in line.clean and getattr(user, name) != line.clean[name]:
                    setattr(user, name, line.clean[name])
            result.updated += 1
        if "password" in line.clean:
            user.set_password(line.clean["password"])
            if user.id is not None:
                user.session_epoch += 1
    try:
        db.session.flush()
        if admins_before and not _active_admins():
            raise ValueError("the file would leave no active admin")
        db.session.commit()
    except (IntegrityError, ValueError) as exc:
        db.session.rollback()
        result.created = result.updated = 0
        reason = str(exc) if isinstance(exc, ValueError) else \
            "a username or email would be taken twice (a swap between lines?)"
        result.errors.append((1, f"{reason}; nothing was written"))


def _active_admins() -> int:
    return db.session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True)))
