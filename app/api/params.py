"""Reading API input: the JSON body and the query string of the users list."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from sqlalchemy import Select, or_, select
from sqlalchemy.sql.elements import ColumnElement

from app.api.errors import ApiError, bad_request
from app.inputs import MAX_INT, bounded_int
from app.models import ROLES, User

SORTABLE = ("id", "username", "email", "role", "active", "version", "created_at", "updated_at")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 when it is not JSON, 400 when it is no object."""
    if not request.is_json:
        raise ApiError(415, "the body must be JSON, sent with Content-Type: application/json")
    try:
        data = json.loads(request.get_data())
    except ValueError:
        raise bad_request({"_schema": ["The body is not valid JSON."]}) from None
    if not isinstance(data, dict):
        raise bad_request({"_schema": ["The body must be a JSON object."]})
    return data


def users_query() -> tuple[Select[tuple[User]], int, int]:
    """The filtered, sorted select of ``GET /api/users`` with its page and per_page.

    Every bad parameter is reported at once, as a 400 with ``errors``.
    """
    args = request.args
    errors: dict[str, list[str]] = {}
    conditions: list[ColumnElement[bool]] = []

    if q := args.get("q", "").strip():
        conditions.append(or_(*(
            column.icontains(q, autoescape=True) for column in (User.username, User.email)
        )))
    if "role" in args:
        if args["role"] in ROLES:
            conditions.append(User.role == args["role"])
        else:
            errors["role"] = [f"Must be one of: {', '.join(ROLES)}."]
    if "active" in args:
        active = BOOLEANS.get(args["active"].lower())
        if active is None:
            errors["active"] = ["Must be true or false."]
        else:
            conditions.append(User.active.is_(active))

    page = _positive_int(args, "page", 1, errors)
    per_page = min(
        _positive_int(args, "per_page", current_app.config["USERS_PER_PAGE"], errors),
        current_app.config["API_MAX_PER_PAGE"],
    )
    order = _order_by(args.get("sort", "id"), errors)
    if errors:
        raise bad_request(errors)
    return select(User).where(*conditions).order_by(*order), page, per_page


def _positive_int(args: Any, name: str, default: int, errors: dict[str, list[str]]) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    value = bounded_int(raw)
    if value is None:
        errors[name] = [f"Must be an integer from 1 to {MAX_INT}."]
        return default
    return value


def _order_by(sort: str, errors: dict[str, list[str]]) -> list[ColumnElement[Any]]:
    """``sort=field`` or ``-field`` (descending), several separated by commas; id breaks ties."""
    order: list[ColumnElement[Any]] = []
    fields: set[str] = set()
    for key in filter(None, (part.strip() for part in sort.split(","))):
        field = key.removeprefix("-")
        if field not in SORTABLE:
            errors["sort"] = [f"Sort by one of: {', '.join(SORTABLE)} (prefix '-' to reverse)."]
            return []
        column = getattr(User, field)
        order.append(column.desc() if key.startswith("-") else column.asc())
        fields.add(field)
    if "id" not in fields:
        order.append(User.id.asc())
    return order
