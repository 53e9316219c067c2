"""Helpers shared by the JSON API tests: auth headers, counts, a new user's body."""

from __future__ import annotations

import base64

from sqlalchemy import func, select

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import User

NEW_USER = {"username": "dave", "email": "Dave@Example.com", "password": "s3cret-enough"}


def bearer(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(user)}"}


def basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def user_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def assert_no_secrets(response) -> None:
    body = response.get_data(as_text=True)
    assert "password" not in body
    assert "scrypt:" not in body and "pbkdf2:" not in body
