"""/account: own email and password (current password required), revoke everywhere."""

from __future__ import annotations

from sqlalchemy import select

from app.auth.tokens import issue_token, user_for_token
from app.extensions import db
from app.models import User, UserChange
from tests.conftest import BOTH_DATABASES, PASSWORD, csrf_token, login

pytestmark = BOTH_DATABASES


def post_account(client, **data):
    token = csrf_token(client, "/account")
    return client.post("/account", data={"csrf_token": token, **data})


def test_account_page_needs_a_login(client):
    assert client.get("/account").status_code == 302


def test_change_email_needs_the_current_password(user_client, bob):
    page = user_client.get("/account").get_data(as_text=True)
    assert 'value="bob@example.com"' in page
    wrong = post_account(user_client, email="new@example.com", current_password="nope-nope")
    assert wrong.status_code == 400
    assert "not your current password" in wrong.get_data(as_text=True)
    ok = post_account(user_client, email="New@Example.com", current_password=PASSWORD)
    assert ok.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, bob.id).email == "new@example.com"
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.actor, change.origin) == ("bob", "ui")
    bad = post_account(user_client, email="not-an-email", current_password=PASSWORD)
    assert bad.status_code == 400


def test_change_password_keeps_this_session_and_ends_the_others(app, user_client, bob):
    other = app.test_client()
    login(other, "bob")
    assert other.get("/account").status_code == 200
    short = post_account(user_client, new_password="short", current_password=PASSWORD)
    assert short.status_code == 400 and "At least 8" in short.get_data(as_text=True)
    response = post_account(user_client, new_password="a-new-long-password",
                            current_password=PASSWORD)
    assert response.status_code == 302
    assert user_client.get("/account").status_code == 200  # still logged in
    assert other.get("/account").status_code == 302        # logged out
    db.session.expire_all()
    assert db.session.get(User, bob.id).check_password("a-new-long-password")


def test_revoke_other_sessions_and_tokens(app, user_client, bob):
    token = issue_token(bob)
    other = app.test_client()
    login(other, "bob")
    form = csrf_token(user_client, "/account")
    response = user_client.post("/account/revoke", data={"csrf_token": form})
    assert response.status_code == 302
    assert "1 API token revoked" in user_client.get("/account").get_data(as_text=True)
    assert other.get("/account").status_code == 302
    db.session.expire_all()
    assert user_for_token(token) is None
    assert user_client.post("/account/revoke", data={}).status_code == 400  # no CSRF token
