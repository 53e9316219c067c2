"""JSON error answers for everything the API raises: never an HTML page.

The users service's errors (``ServiceError``: status, message, details) are answered by
the one handler of ``app.errors``, as JSON under /api.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from app.api import bp


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


@bp.errorhandler(HTTPException)
def handle_http_error(exc: HTTPException):
    """Werkzeug errors raised inside API views (404 of get_or_404, 413...) as JSON."""
    return error_response(exc.code or 500, exc.description or exc.name)
