"""JSON error answers for everything the API raises: never an HTML page."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from app.api import bp
from app.extensions import db
from app.users.service import LastAdminError, StaleVersionError, UserError, UserGoneError


class ApiError(Exception):
    """An error answer: ``{"error": message, **extra}`` with ``status`` and ``headers``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> tuple[Response, int, dict[str, str]]:
    """The JSON body every API error shares, ``{"error": message}`` plus ``extra``."""
    return jsonify(error=message, **extra), status, headers or {}


def bad_request(errors: dict[str, list[str]]) -> ApiError:
    """A 400 carrying per-field messages, like the service's validation errors."""
    return ApiError(400, "invalid input", errors=errors)


@bp.errorhandler(ApiError)
def handle_api_error(exc: ApiError):
    return error_response(exc.status, exc.message, exc.headers, **exc.extra)


@bp.errorhandler(UserError)
def handle_user_error(exc: UserError):
    """400 for bad fields, 409 for a taken username or email (DuplicateError)."""
    db.session.rollback()
    message = "username or email already taken" if exc.status == 409 else "invalid input"
    return error_response(exc.status, message, errors=exc.errors)


@bp.errorhandler(StaleVersionError)
def handle_stale(exc: StaleVersionError):
    """409 with the user as it is now, so the client can merge and retry.

    The user's fields are both at the top level and under ``current``: clients may read
    "409 with the current user" either way.
    """
    current = exc.current.to_dict()
    db.session.rollback()
    return error_response(409, str(exc), **{**current, "current": current})


@bp.errorhandler(LastAdminError)
def handle_last_admin(exc: LastAdminError):
    db.session.rollback()
    return error_response(409, str(exc))


@bp.errorhandler(UserGoneError)
def handle_user_gone(exc: UserGoneError):
    """The user was deleted by someone else while this request changed it."""
    db.session.rollback()
    return error_response(404, str(exc))


@bp.errorhandler(HTTPException)
def handle_http_error(exc: HTTPException):
    """Werkzeug errors raised inside API views (404 of get_or_404, 413...) as JSON."""
    return error_response(exc.code or 500, exc.description or exc.name)
