"""Security defaults: response headers, Socket.IO origin checks, role checks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Response, abort
from flask_login import current_user, login_required

from app.inputs import refuse_nul

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def init_security(app: Flask) -> None:
    """Refuse NUL bytes in any request's input; send a strict Content-Security-Policy
    (no inline scripts) and related headers."""
    app.before_request(refuse_nul)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def origin_checker(extra: list[str] | None) -> Callable[[str | None, dict], bool]:
    """Allow Socket.IO connections from this server's own origin and the configured ones.

    A callable, because python-engineio reads ``[]`` as "no origin check at all".
    """
    allowed = {o.rstrip("/") for o in extra or []}

    def check(origin: str | None, environ: dict) -> bool:
        if origin is None:  # not a browser: nothing to check
            return True
        scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "http")
        own = f"{scheme}://{environ.get('HTTP_HOST', '')}"
        return origin.rstrip("/") in allowed or origin == own

    return check


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A page only an active admin may open (403 for other users)."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped
