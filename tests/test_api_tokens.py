"""The JSON API's authentication: issuing and revoking tokens, bearer auth, who may write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from app.auth.tokens import issue_token, revoke_token
from app.extensions import db
from app.models import ApiToken, User, utcnow
from app.users.service import update_user
from tests.api_helpers import NEW_USER, basic, bearer, user_count
from tests.conftest import BOTH_DATABASES, PASSWORD, login

pytestmark = BOTH_DATABASES


@pytest.fixture
def user_auth(make_user) -> dict[str, str]:
    return bearer(make_user("carol"))


# --- tokens ---------------------------------------------------------------------------------

def test_basic_credentials_give_a_working_token(client: FlaskClient, admin: User):
    response = client.post("/api/tokens", headers=basic("admin", PASSWORD))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"token", "expires_at"} and body["expires_at"]
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/users", headers=headers).status_code == 200
    # Only the hash is stored.
    assert db.session.scalar(select(ApiToken.token_hash)) == ApiToken.hash(body["token"])


def test_basic_credentials_name_the_user_in_any_case(client: FlaskClient, admin: User):
    response = client.post("/api/tokens", headers=basic("ADMIN", PASSWORD))
    assert response.status_code == 200
    me = client.get(f"/api/users/{admin.id}", headers={
        "Authorization": f"Bearer {response.get_json()['token']}"})
    assert me.status_code == 200 and me.get_json()["username"] == "admin"


@pytest.mark.parametrize(
    "headers",
    [
        basic("admin", "wrong-password"),
        basic("nobody", PASSWORD),
        basic("", PASSWORD),
        {},
        {"Authorization": "Bearer something"},
        {"Authorization": "Basic not-base64!"},
    ],
    ids=["bad-password", "unknown-user", "no-username", "none", "bearer", "garbage"],
)
def test_bad_basic_credentials_are_refused(client: FlaskClient, admin: User, headers):
    response = client.post("/api/tokens", headers=headers)
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0


def test_inactive_user_gets_no_token(client: FlaskClient, admin: User, make_user):
    make_user("erin", active=False)
    response = client.post("/api/tokens", headers=basic("erin", PASSWORD))
    assert response.status_code == 401
    assert "deactivated" in response.get_json()["error"]


def test_delete_token_revokes_the_token_used(client: FlaskClient, admin: User):
    headers, other = bearer(admin), bearer(admin)
    response = client.delete("/api/tokens", headers=headers)
    assert response.status_code == 204 and response.get_data() == b""
    assert client.get("/api/users", headers=headers).status_code == 401
    assert client.get("/api/users", headers=other).status_code == 200


def expired(user: User) -> dict[str, str]:
    token, plain = ApiToken.issue(user, timedelta(seconds=-1))
    db.session.add(token)
    db.session.commit()
    return {"Authorization": f"Bearer {plain}"}


def revoked(user: User) -> dict[str, str]:
    plain = issue_token(user)
    revoke_token(plain)
    return {"Authorization": f"Bearer {plain}"}


def deactivated(user: User) -> dict[str, str]:
    headers = bearer(user)
    update_user(user, {"active": False}, None)
    return headers


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda user: {},
        lambda user: {"Authorization": "Bearer not-a-token"},
        lambda user: {"Authorization": "Bearer "},
        lambda user: basic("carol", PASSWORD),
        expired,
        revoked,
        deactivated,
    ],
    ids=["missing", "unknown", "empty", "basic", "expired", "revoked", "inactive-user"],
)
def test_requests_without_a_valid_token_get_401(
    client: FlaskClient, admin: User, make_user, make_headers
):
    headers = make_headers(make_user("carol", role="admin"))
    for method, url in [("get", "/api/users"), ("get", "/api/users/1"), ("post", "/api/users"),
                        ("patch", "/api/users/1"), ("delete", "/api/users/1"),
                        ("delete", "/api/tokens")]:
        response = getattr(client, method)(url, headers=headers, json={"version": 1})
        assert response.status_code == 401, (method, url)
        assert response.is_json and response.get_json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert user_count() == 2


def test_the_session_cookie_is_not_enough(client: FlaskClient, admin: User):
    assert login(client, "admin").status_code == 302
    assert client.get("/api/users").status_code == 401
    assert client.post("/api/users", json=NEW_USER).status_code == 401


# --- who may write ----------------------------------------------------------------------

def test_non_admin_may_read_but_not_write(client: FlaskClient, admin: User, user_auth):
    assert client.get("/api/users", headers=user_auth).status_code == 200
    assert client.get(f"/api/users/{admin.id}", headers=user_auth).status_code == 200
    writes = [
        client.post("/api/users", headers=user_auth, json=NEW_USER),
        client.patch(f"/api/users/{admin.id}", headers=user_auth,
                     json={"version": admin.version, "email": "x@example.com"}),
        client.delete(f"/api/users/{admin.id}", headers=user_auth),
    ]
    for response in writes:
        assert response.status_code == 403
        assert response.is_json and response.get_json()["error"]
    assert user_count() == 2
    assert db.session.get(User, admin.id).email == "admin@example.com"


def test_deactivated_admin_cannot_write(client: FlaskClient, admin: User, make_user):
    other = make_user("olivia", role="admin")
    headers = bearer(other)
    update_user(other, {"active": False}, None)
    assert client.post("/api/users", headers=headers, json=NEW_USER).status_code == 401


def test_sockets_opened_with_a_revoked_or_expired_token_close_at_the_next_sweep(
        app, admin, sockets):
    """Revoked by the API, the CLI or another process, or expired: only the database
    says so, and each process's sweep (every SESSION_SWEEP_SECONDS) closes them."""
    from app.auth.sockets import close_revoked_tokens

    leaked, kept, expiring = issue_token(admin), issue_token(admin), issue_token(admin)
    chat = sockets("/chat", admin, auth={"token": leaked})
    users = sockets("/users", admin, auth={"token": leaked})
    other = sockets("/users", admin, auth={"token": kept})
    soon = sockets("/users", admin, auth={"token": expiring})  # (/demo would start a ticker)
    assert close_revoked_tokens() == 0
    assert revoke_token(leaked)
    db.session.execute(update(ApiToken).where(ApiToken.token_hash == ApiToken.hash(expiring))
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert close_revoked_tokens() == 3
    assert not chat.is_connected("/chat") and not users.is_connected("/users")
    assert not soon.is_connected("/users")
    assert other.is_connected("/users")
