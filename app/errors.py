"""Error responses: site-styled pages, and JSON ``{"error": ...}`` for everything under /api."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, default_exceptions

from app.extensions import db
from app.users.service import ServiceError

PAGE_CODES = (400, 403, 404, 405, 409, 413, 500)
CSRF_MESSAGE = "The form expired or came from another page. Please go back, reload it and retry."


def wants_json() -> bool:
    """Every error of the JSON API is JSON, including unknown /api routes."""
    return request.path == "/api" or request.path.startswith("/api/")


def reason(error: HTTPException) -> str:
    """A short reason: the description given to ``abort``, else the status name."""
    if error.description and error.description != type(error).description:
        return error.description
    return error.name


def _headers(error: HTTPException) -> list[tuple[str, str]]:
    # Keep headers such as Allow (405) or WWW-Authenticate (401); the body type is ours.
    return [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]


def handle_http_error(error: HTTPException) -> Response | tuple[str, int, list]:
    """Render the error page for ``error`` (or its JSON under /api)."""
    code = error.code or 500
    if wants_json():
        response = jsonify(error=reason(error))
        response.status_code = code
        response.headers.extend(_headers(error))
        return response
    template = f"errors/{code}.html" if code in PAGE_CODES else "errors/error.html"
    return render_template(template, error=error, message=reason(error)), code, _headers(error)


def handle_csrf_error(error: CSRFError) -> Response | tuple[str, int]:
    """A missing or stale CSRF token: ask to reload the form (JSON under /api)."""
    if wants_json():
        response = jsonify(error=error.description)
        response.status_code = 400
        return response
    return render_template("errors/400.html", error=error, message=CSRF_MESSAGE), 400


def handle_service_error(error: ServiceError) -> Response | tuple[str, int, list]:
    """A service error no view turned into a form message: under /api the JSON answer
    ``{"error": message, **details}``, elsewhere the error page; with the error's status."""
    details = error.details() if wants_json() else {}  # read before the rollback expires it
    db.session.rollback()
    if wants_json():
        response = jsonify(error=error.message, **details)
        response.status_code = error.status
        return response
    return handle_http_error(default_exceptions[error.status](str(error)))


def register(app: Flask) -> None:
    """Install the handlers; the 500 one also catches unhandled exceptions."""
    from app.health import register_outage_handler  # it imports wants_json from here

    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ServiceError, handle_service_error)
    register_outage_handler(app)
