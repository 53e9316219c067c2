"""Reading API input: the JSON body and the query string of the users list."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from app.api.errors import ApiError, bad_request
from app.realtime import safe_json
from app.users.listing import Listing, ListingError


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 when it is not JSON, 400 when it is no object."""
    if not request.is_json:
        raise ApiError(415, "the body must be JSON, sent with Content-Type: application/json")
    try:
        data = safe_json.loads(request.get_data())
    except (safe_json.TooDeep, safe_json.HasNul) as exc:
        raise bad_request({"_schema": [f"The body is refused: {exc}."]}) from None
    except ValueError:
        raise bad_request({"_schema": ["The body is not valid JSON."]}) from None
    if not isinstance(data, dict):
        raise bad_request({"_schema": ["The body must be a JSON object."]})
    return data


def users_listing() -> Listing:
    """The ``Listing`` of ``GET /api/users``; every bad parameter is reported at once, as a
    400 with ``errors``."""
    config = current_app.config
    try:
        return Listing.from_args(request.args, strict=True,
                                 default_per_page=config["USERS_PER_PAGE"],
                                 max_per_page=config["API_MAX_PER_PAGE"])
    except ListingError as exc:
        raise bad_request(exc.errors) from None
