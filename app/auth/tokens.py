"""API tokens: issue, revoke and resolve to a user."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import NamedTuple

from flask import current_app, request
from sqlalchemy import bindparam, select

from app.extensions import db
from app.models import ApiToken, User, utcnow


def issue_token(user: User) -> str:
    """Store a new token for ``user`` (hashed, with an expiry) and return it in plain."""
    lifetime = timedelta(seconds=current_app.config["TOKEN_LIFETIME_SECONDS"])
    token, plain = ApiToken.issue(user, lifetime)
    db.session.add(token)
    db.session.commit()
    return plain


def revoke_token(plain: str) -> bool:
    """Revoke one token; False when it is unknown or already revoked."""
    token = db.session.scalar(select(ApiToken).filter_by(token_hash=ApiToken.hash(plain)))
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    db.session.commit()
    return True


def revoke_user_tokens(user: User) -> int:
    """Revoke every live token of ``user``; returns how many."""
    tokens = db.session.scalars(
        select(ApiToken).filter_by(user_id=user.id, revoked_at=None)
    ).all()
    for token in tokens:
        token.revoked_at = utcnow()
    db.session.commit()
    return len(tokens)


def live_token_hashes(hashes: Iterable[str]) -> set[str]:
    """Which of these token hashes name tokens neither revoked nor expired."""
    hashes = sorted(set(hashes))
    live: set[str] = set()
    for start in range(0, len(hashes), 500):
        live.update(db.session.scalars(select(ApiToken.token_hash).where(
            ApiToken.token_hash.in_(hashes[start:start + 500]),
            ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow())))
    return live


class TokenHolder(NamedTuple):
    """Who a valid token belongs to: what a request or a socket needs to know of them."""

    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# Built once: constructing a statement costs more than running this one (every API
# call). Columns, not the User entity: loading an object costs as much again.
_HOLDER_OF_TOKEN = select(User.id, User.username, User.role).join(ApiToken).where(
    ApiToken.token_hash == bindparam("token_hash"),
    ApiToken.revoked_at.is_(None),
    ApiToken.expires_at > bindparam("now"),
    User.active.is_(True),
)


def user_for_token(plain: object) -> TokenHolder | None:
    """The active user a valid (unexpired, unrevoked) token belongs to, else None."""
    if not isinstance(plain, str) or not plain:
        return None
    row = db.session.execute(_HOLDER_OF_TOKEN, {"token_hash": ApiToken.hash(plain),
                                                "now": utcnow()}).first()
    return None if row is None else TokenHolder(*row)


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, else None."""
    auth = request.authorization
    if auth is None or auth.type != "bearer":
        return None
    return auth.token
