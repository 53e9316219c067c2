"""A user's history and revert (undo of a delete included), over the JSON API."""

from __future__ import annotations

from app.api import bp
from app.api.auth import admin_required, token_required
from app.api.errors import ApiError, bad_request
from app.api.params import json_object
from app.inputs import MAX_INT
from app.live.changelog import change_payload
from app.users.history import NoSuchChangeError, changes_of, revert


@bp.get("/users/<int:user_id>/history")
@token_required
def user_history(user_id: int):
    """Every retained change of the user, oldest first; also for a deleted user."""
    changes = changes_of(user_id) if user_id <= MAX_INT else []
    if not changes:
        raise ApiError(404, f"the change log holds nothing of user {user_id}")
    return {"items": [change_payload(change) for change in changes]}


@bp.post("/users/<int:user_id>/revert")
@admin_required
def revert_user(user_id: int):
    """Make the user as it was right after change ``cursor``; ``version`` optional."""
    data = json_object()
    cursor, version = data.get("cursor"), data.get("version")
    errors = {}
    if type(cursor) is not int or not 1 <= cursor <= 2**63 - 1:
        errors["cursor"] = ["Required: the cursor of an insert or update of this user."]
    if version is not None and type(version) is not int:
        errors["version"] = ["The integer version you last saw, or leave it out."]
    if unknown := sorted(set(data) - {"cursor", "version"}):
        errors["_schema"] = [f"Unknown field(s): {', '.join(unknown)}."]
    if errors:
        raise bad_request(errors)
    if user_id > MAX_INT:
        raise NoSuchChangeError(f"no insert or update of user {user_id} at cursor {cursor}")
    return revert(user_id, cursor, version).to_dict()
