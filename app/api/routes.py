"""The users resource: list, create, read, change (optimistic locking) and delete."""

from __future__ import annotations

from typing import Any

from flask import abort, url_for

from app.api import bp
from app.api.auth import admin_required, token_required
from app.api.errors import bad_request
from app.api.params import json_object, users_listing
from app.extensions import db
from app.inputs import MAX_INT
from app.models import User
from app.users.service import UserGoneError, change_user, create_user, delete_user

# Fields the server sets. A client may send back the object it got (GET, 201, 409), so
# they are dropped, not refused; the service never sees them.
READ_ONLY = ("id", "created_at", "updated_at")


def _writable(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in READ_ONLY}


def _missing(user_id: int) -> str:
    return f"no user with id {user_id}"


def _check_id(user_id: int) -> None:
    # No such id can exist, and sqlite3 cannot even bind one past 64 bits. Not checked by
    # the converter (<int(max=...)>): Werkzeug would answer 405 to PATCH and DELETE, as the
    # GET rule of the same path fails the same check after its methods were noted.
    if user_id > MAX_INT:
        abort(404, description=_missing(user_id))


def _get_user(user_id: int) -> User:
    _check_id(user_id)
    return db.get_or_404(User, user_id, description=_missing(user_id))


@bp.get("/users")
@token_required
def list_users():
    """One page of users, filtered by ``q``, ``role`` and ``active``, sorted by ``sort``."""
    listing = users_listing()
    total = listing.count()
    return {
        "items": [user.to_dict() for user in listing.rows(total=total)],
        "total": total,
        "page": listing.page,
        "per_page": listing.per_page,
        "pages": -(-total // listing.per_page),
    }


@bp.post("/users")
@admin_required
def post_user():
    """Create a user from ``{username, email, password, role?, active?}`` (201)."""
    user = create_user(_writable(json_object()))
    location = url_for("api.get_user", user_id=user.id)
    return user.to_dict(), 201, {"Location": location}


@bp.get("/users/<int:user_id>")
@token_required
def get_user(user_id: int):
    """One user."""
    return _get_user(user_id).to_dict()


@bp.patch("/users/<int:user_id>")
@admin_required
def patch_user(user_id: int):
    """Change the given fields if ``version`` is still the user's version (else 409)."""
    data = _writable(json_object())
    version = data.pop("version", None)
    if type(version) is not int:
        raise bad_request({"version": ["Required: the integer version you last saw."]})
    _check_id(user_id)
    try:
        return change_user(user_id, data, version)
    except UserGoneError:
        abort(404, description=_missing(user_id))


@bp.delete("/users/<int:user_id>")
@admin_required
def remove_user(user_id: int):
    """Delete a user (204); the last active admin cannot go."""
    delete_user(_get_user(user_id))
    return "", 204
