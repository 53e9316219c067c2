"""Issue an API token for HTTP Basic credentials; revoke the token in use."""

from __future__ import annotations

from functools import cache

from flask import request
from sqlalchemy import select
from werkzeug.security import check_password_hash

from app.api import bp
from app.api.auth import token_required
from app.api.errors import ApiError
from app.auth.tokens import bearer_token, issue_token, revoke_token
from app.extensions import db
from app.models import ApiToken, User, hash_password
from app.users.service import user_named

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="LiveCRUD"'}


@cache
def _dummy_hash() -> str:
    return hash_password("not a password")


def _basic_user() -> User:
    """The active user whose HTTP Basic credentials came with the request."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        raise ApiError(401, "send the username and password with HTTP Basic", BASIC_CHALLENGE)
    password = auth.password or ""
    user = user_named(auth.username)
    if user is None:
        # As slow as a real check, so the answer's timing does not reveal usernames.
        check_password_hash(_dummy_hash(), password)
        raise ApiError(401, "invalid username or password", BASIC_CHALLENGE)
    if not user.check_password(password):
        raise ApiError(401, "invalid username or password", BASIC_CHALLENGE)
    if not user.is_active:
        raise ApiError(401, "this account is deactivated", BASIC_CHALLENGE)
    return user


@bp.post("/tokens")
def create_token():
    """Exchange HTTP Basic username and password for a new bearer token (200)."""
    plain = issue_token(_basic_user())
    token = db.session.scalar(select(ApiToken).filter_by(token_hash=ApiToken.hash(plain)))
    return {"token": plain, "expires_at": token.expires_at.isoformat()}


@bp.delete("/tokens")
@token_required
def delete_token():
    """Revoke the bearer token this request carries (204)."""
    revoke_token(bearer_token())
    return "", 204
