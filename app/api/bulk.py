"""Bulk actions and the CSV export of the users list, over the JSON API."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request, stream_with_context

from app.api import bp
from app.api.auth import admin_required, token_required
from app.api.errors import bad_request, error_response
from app.api.params import json_object
from app.extensions import db
from app.inputs import MAX_INT
from app.models import ROLES
from app.users.bulk import ACTIONS, MissingUsersError, bulk_action
from app.users.csvio import export_csv
from app.users.listing import Listing, ListingError


@bp.errorhandler(MissingUsersError)
def handle_missing(exc: MissingUsersError):
    db.session.rollback()
    return error_response(404, str(exc), missing=exc.missing)


@bp.post("/users/bulk")
@admin_required
def bulk_users():
    """``{"ids", "action", "role"?}``: all or nothing; 200 ``{"count"}`` (distinct ids)."""
    data = json_object()
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
        raise bad_request(errors)
    return {"count": bulk_action(ids, action, role)}


@bp.get("/users/export")
@token_required
def export_users():
    """Every user the query of ``GET /api/users`` matches (all pages), as CSV, streamed."""
    args = {k: v for k, v in request.args.items() if k not in ("page", "per_page")}
    try:
        listing = Listing.from_args(args, strict=True)
    except ListingError as exc:
        raise bad_request(exc.errors) from None
    return csv_response(export_csv(listing))


def csv_response(chunks: Iterator[str]) -> Response:
    """A streamed CSV download (chunked: no Content-Length)."""
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="users.csv"'
    return response
