"""A user's history and revert (undo of a delete included), over the JSON API."""

from __future__ import annotations

from flask import request

from app.api import bp
from app.api.auth import admin_required, token_required
from app.api.errors import ApiError, bad_request
from app.api.params import json_object
from app.inputs import MAX_CURSOR, MAX_INT
from app.live.changelog import change_payload
from app.users.history import NoSuchChangeError, changes_of, has_changes, revert

MAX_LIMIT = 1000


def _int_param(name: str, low: int, high: int) -> int | None:
    """An optional integer query parameter within [low, high]; 400 otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and low <= int(raw) <= high):
        raise bad_request({name: [f"Must be an integer from {low} to {high}."]})
    return int(raw)


@bp.get("/users/<int:user_id>/history")
@token_required
def user_history(user_id: int):
    """Every retained change of the user, oldest first; also for a deleted user. With
    ``limit``, at most that many, from the one after cursor ``after`` (default 0), and
    ``next_after``: the cursor to ask after for the next ones (null after the last)."""
    after = _int_param("after", 0, MAX_CURSOR) or 0
    limit = _int_param("limit", 1, MAX_LIMIT)
    known = user_id <= MAX_INT
    changes = changes_of(user_id, after=after, limit=None if limit is None else limit + 1
                         ) if known else []
    if not changes and not (known and has_changes(user_id)):
        raise ApiError(404, f"the change log holds nothing of user {user_id}")
    answer: dict = {"items": [change_payload(change) for change in changes[:limit]]}
    if limit is not None:
        answer["next_after"] = changes[limit - 1].cursor if len(changes) > limit else None
    return answer


@bp.post("/users/<int:user_id>/revert")
@admin_required
def revert_user(user_id: int):
    """Make the user as it was right after change ``cursor``; ``version`` optional."""
    data = json_object()
    cursor, version = data.get("cursor"), data.get("version")
    errors = {}
    if type(cursor) is not int or not 1 <= cursor <= MAX_CURSOR:
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
