"""Bulk actions and the CSV export of the users list, over the JSON API."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request, stream_with_context

from app.api import bp
from app.api.auth import admin_required, token_required
from app.api.errors import bad_request
from app.api.params import json_object
from app.users.bulk import bulk_action, check_request
from app.users.csvio import export_csv
from app.users.listing import Listing, ListingError


@bp.post("/users/bulk")
@admin_required
def bulk_users():
    """``{"ids", "action", "role"?}``: all or nothing; 200 ``{"count"}`` (distinct ids)."""
    ids, action, role = check_request(json_object())
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
    return csv_response(export_csv(listing, for_spreadsheets=False))


def csv_response(chunks: Iterator[str]) -> Response:
    """A streamed CSV download (chunked: no Content-Length)."""
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="users.csv"'
    return response
