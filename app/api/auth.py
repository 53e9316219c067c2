"""Bearer-token authentication of API requests (never the session cookie)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g

from app.api.errors import ApiError
from app.auth.tokens import TokenHolder, bearer_token, user_for_token
from app.live.capture import set_change_context

REALM = 'Bearer realm="LiveCRUD"'


def _authenticate() -> TokenHolder:
    token = bearer_token()
    if not token:
        raise ApiError(
            401, "authentication required: send Authorization: Bearer <token>",
            {"WWW-Authenticate": REALM},
        )
    user = user_for_token(token)
    if user is None:
        raise ApiError(
            401, "invalid, expired or revoked token, or inactive user",
            {"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    return user


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the view run for any active user with a valid token (``g.api_user``)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.api_user = _authenticate()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the view run for an admin only; its writes are recorded as made by that admin."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = _authenticate()
        if not user.is_admin:
            raise ApiError(403, "this needs an admin token")
        g.api_user = user
        set_change_context(user.username, "api")
        return view(*args, **kwargs)

    return wrapper
