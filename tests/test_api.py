"""The JSON API: tokens, bearer auth, users CRUD, validation, locking, listing."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.auth.tokens import issue_token, revoke_token
from app.extensions import db
from app.models import ApiToken, User, UserChange
from app.users.service import update_user
from tests.conftest import BOTH_DATABASES, PASSWORD, login

pytestmark = BOTH_DATABASES


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


@pytest.fixture
def admin_auth(admin: User) -> dict[str, str]:
    return bearer(admin)


@pytest.fixture
def user_auth(make_user) -> dict[str, str]:
    return bearer(make_user("carol"))


NEW_USER = {"username": "dave", "email": "Dave@Example.com", "password": "s3cret-enough"}


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


# --- create -------------------------------------------------------------------------------

def test_create_user(client: FlaskClient, admin_auth):
    response = client.post("/api/users", headers=admin_auth, json=NEW_USER)
    assert response.status_code == 201
    user = response.get_json()
    assert user["username"] == "dave" and user["email"] == "dave@example.com"
    assert user["role"] == "user" and user["active"] is True and user["version"] == 1
    assert isinstance(user["id"], int) and user["created_at"] and user["updated_at"]
    assert_no_secrets(response)
    assert response.headers["Location"].endswith(f"/api/users/{user['id']}")
    assert client.get(response.headers["Location"], headers=admin_auth).get_json() == user


def test_create_admin_inactive(client: FlaskClient, admin_auth):
    body = {**NEW_USER, "role": "admin", "active": False}
    user = client.post("/api/users", headers=admin_auth, json=body).get_json()
    assert user["role"] == "admin" and user["active"] is False


def test_writes_are_recorded_as_made_through_the_api(client: FlaskClient, admin_auth):
    client.post("/api/users", headers=admin_auth, json=NEW_USER)
    change = db.session.scalars(select(UserChange).order_by(UserChange.cursor.desc())).first()
    assert (change.op, change.actor, change.origin) == ("insert", "admin", "api")


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"username": "x" * 33}, "username"),
        ({"username": "ab"}, "username"),
        ({"username": "no spaces"}, "username"),
        ({"username": 5}, "username"),
        ({"email": ["a@example.com"]}, "email"),
        ({"password": "short"}, "password"),
        ({"password": 12345678}, "password"),
        ({"active": "yes"}, "active"),
        ({"active": 1}, "active"),
        ({"role": "root"}, "role"),
        ({"username": None}, "username"),
        ({"favourite": "colour"}, "_schema"),
    ],
)
def test_create_rejects_bad_fields(client: FlaskClient, admin_auth, changes, field):
    response = client.post("/api/users", headers=admin_auth, json={**NEW_USER, **changes})
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert isinstance(errors[field], list) and errors[field]
    assert user_count() == 1


def test_create_reports_every_missing_field(client: FlaskClient, admin_auth):
    response = client.post("/api/users", headers=admin_auth, json={})
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"username", "email", "password"}
    assert user_count() == 1


@pytest.mark.parametrize("body", ["[]", '"dave"', "null", "42", "{", "{'a': 1}", ""])
def test_create_needs_a_json_object(client: FlaskClient, admin_auth, body):
    response = client.post(
        "/api/users", headers=admin_auth, data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json()["errors"]["_schema"]
    assert user_count() == 1


def test_create_needs_a_json_body(client: FlaskClient, admin_auth):
    response = client.post("/api/users", headers=admin_auth, data=NEW_USER)
    assert response.status_code == 415
    assert response.is_json and response.get_json()["error"]
    assert user_count() == 1


def test_too_large_body_is_a_json_413(app, client: FlaskClient, admin_auth):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    body = {**NEW_USER, "padding": "x" * 2000}
    response = client.post("/api/users", headers=admin_auth, json=body)
    assert response.status_code == 413
    assert response.is_json and response.get_json()["error"]


@pytest.mark.parametrize(
    "changes,field",
    [({"username": "ADMIN"}, "username"), ({"email": "Admin@EXAMPLE.com"}, "email")],
)
def test_create_duplicate_is_409(client: FlaskClient, admin_auth, changes, field):
    response = client.post("/api/users", headers=admin_auth, json={**NEW_USER, **changes})
    assert response.status_code == 409
    assert response.get_json()["errors"][field]
    assert user_count() == 1


# --- read, change, delete ---------------------------------------------------------------

def test_get_user_and_404(client: FlaskClient, admin: User, admin_auth):
    response = client.get(f"/api/users/{admin.id}", headers=admin_auth)
    assert response.status_code == 200
    assert response.get_json() == admin.to_dict()
    assert_no_secrets(response)
    missing = client.get("/api/users/9999", headers=admin_auth)
    assert missing.status_code == 404
    assert missing.is_json and missing.get_json()["error"]


def test_patch_changes_fields_and_bumps_version(client: FlaskClient, make_user, admin_auth):
    user = make_user("dave")
    version = user.version
    response = client.patch(
        f"/api/users/{user.id}", headers=admin_auth,
        json={"version": version, "email": "DAVE2@example.com", "role": "admin"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "dave2@example.com" and body["role"] == "admin"
    assert body["version"] == version + 1
    assert_no_secrets(response)
    assert client.get(f"/api/users/{user.id}", headers=admin_auth).get_json() == body


def test_patch_password(client: FlaskClient, make_user, admin_auth):
    user = make_user("dave")
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={"version": user.version, "password": "a-new-password"})
    assert response.status_code == 200
    assert_no_secrets(response)
    assert client.post("/api/tokens", headers=basic("dave", "a-new-password")).status_code == 200


def test_patch_stale_version_is_409_with_the_current_user(
    client: FlaskClient, make_user, admin_auth
):
    user = make_user("dave")
    seen = user.version
    assert client.patch(f"/api/users/{user.id}", headers=admin_auth,
                        json={"version": seen, "role": "admin"}).status_code == 200
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={"version": seen, "email": "lost@example.com"})
    assert response.status_code == 409
    body = response.get_json()
    now = client.get(f"/api/users/{user.id}", headers=admin_auth).get_json()
    assert body == {**now, "error": body["error"], "current": now}
    assert "changed" in body["error"]
    assert body["version"] == body["current"]["version"] == seen + 1
    assert body["email"] == body["current"]["email"] == "dave@example.com"
    assert body["role"] == "admin"
    assert_no_secrets(response)


def test_plain_sql_change_makes_a_version_stale(client: FlaskClient, make_user, admin_auth):
    user = make_user("dave")
    seen = user.version
    db.session.execute(text("UPDATE users SET email = 'sql@example.com' WHERE id = :id"),
                       {"id": user.id})
    db.session.commit()
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={"version": seen, "role": "admin"})
    assert response.status_code == 409
    body = response.get_json()
    assert body["email"] == body["current"]["email"] == "sql@example.com"


def test_patch_of_a_user_deleted_meanwhile_is_404(client: FlaskClient, make_user, admin_auth):
    user = make_user("dave")
    seen = user.version  # the API's session still holds this row when it writes
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={"version": seen, "role": "admin"})
    assert response.status_code == 404
    assert response.is_json and response.get_json()["error"]


def test_patch_back_the_fetched_user(client: FlaskClient, admin: User, make_user, admin_auth):
    """The read-only fields of a fetched user are ignored, even when changed."""
    user = make_user("dave")
    fetched = client.get(f"/api/users/{user.id}", headers=admin_auth).get_json()
    body = {**fetched, "email": "dave2@example.com", "id": admin.id,
            "created_at": "2000-01-01T00:00:00+00:00", "updated_at": "nonsense"}
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth, json=body)
    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert changed["id"] == user.id and changed["email"] == "dave2@example.com"
    assert changed["created_at"] == fetched["created_at"]
    assert changed["version"] == fetched["version"] + 1
    db.session.expire_all()
    assert db.session.get(User, admin.id).email == "admin@example.com"


def test_create_ignores_read_only_fields(client: FlaskClient, admin: User, admin_auth):
    body = {**NEW_USER, "id": admin.id, "created_at": "2000-01-01T00:00:00+00:00",
            "updated_at": None}
    response = client.post("/api/users", headers=admin_auth, json=body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["id"] != admin.id and created["username"] == "dave"
    assert not created["created_at"].startswith("2000")
    assert user_count() == 2


@pytest.mark.parametrize("body", [{}, {"version": "1"}, {"version": True}, {"version": 1.5},
                                  {"version": None}])
def test_patch_needs_an_integer_version(client: FlaskClient, make_user, admin_auth, body):
    user = make_user("dave")
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={**body, "role": "admin"})
    assert response.status_code == 400
    assert response.get_json()["errors"]["version"]
    assert db.session.get(User, user.id).role == "user"


@pytest.mark.parametrize(
    "changes,status,field",
    [
        ({"email": "nope"}, 400, "email"),
        ({"active": "no"}, 400, "active"),
        ({"username": 7}, 400, "username"),
        ({"favourite": "colour"}, 400, "_schema"),
        ({"username": "Admin"}, 409, "username"),
        ({"email": "ADMIN@example.com"}, 409, "email"),
    ],
)
def test_patch_rejects_bad_fields(
    client: FlaskClient, make_user, admin_auth, changes, status, field
):
    user = make_user("dave")
    before = user.to_dict()
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={"version": user.version, **changes})
    assert response.status_code == status
    assert response.get_json()["errors"][field]
    db.session.expire_all()
    assert db.session.get(User, user.id).to_dict() == before


@pytest.mark.parametrize("user_id", ["9999", "2147483648", "99999999999999999999"])
def test_unknown_or_huge_ids_are_404(client: FlaskClient, admin_auth, user_id):
    url = f"/api/users/{user_id}"
    for response in (
        client.get(url, headers=admin_auth),
        client.patch(url, headers=admin_auth, json={"version": 1}),
        client.delete(url, headers=admin_auth),
    ):
        assert response.status_code == 404
        assert response.is_json and response.get_json()["error"]


def test_last_admin_cannot_be_demoted_deactivated_or_deleted(
    client: FlaskClient, admin: User, admin_auth
):
    url = f"/api/users/{admin.id}"
    for change in ({"role": "user"}, {"active": False}):
        response = client.patch(url, headers=admin_auth, json={"version": admin.version, **change})
        assert response.status_code == 409
        assert "admin" in response.get_json()["error"]
    response = client.delete(url, headers=admin_auth)
    assert response.status_code == 409 and response.get_json()["error"]
    db.session.expire_all()
    assert db.session.get(User, admin.id).is_admin


def test_delete_user(client: FlaskClient, make_user, admin_auth):
    user = make_user("dave")
    issue_token(user)
    response = client.delete(f"/api/users/{user.id}", headers=admin_auth)
    assert response.status_code == 204 and response.get_data() == b""
    assert client.get(f"/api/users/{user.id}", headers=admin_auth).status_code == 404
    assert client.delete(f"/api/users/{user.id}", headers=admin_auth).status_code == 404
    assert db.session.scalar(
        select(func.count()).select_from(ApiToken).filter_by(user_id=user.id)
    ) == 0


# --- listing ----------------------------------------------------------------------------

@pytest.fixture
def crowd(admin: User, make_user) -> None:
    """admin plus: bob, carol (inactive), dave_x (admin), erin (email at corpmail.org)."""
    make_user("bob")
    make_user("carol", active=False)
    make_user("dave_x", role="admin")
    make_user("erin", email="Erin@CorpMail.org")


def listing(client: FlaskClient, headers: dict[str, str], **query) -> dict:
    response = client.get("/api/users", headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    assert_no_secrets(response)
    return response.get_json()


def names(body: dict) -> list[str]:
    return [user["username"] for user in body["items"]]


def test_list_defaults(client: FlaskClient, crowd, admin_auth):
    body = listing(client, admin_auth)
    assert names(body) == ["admin", "bob", "carol", "dave_x", "erin"]
    assert (body["total"], body["page"], body["pages"], body["per_page"]) == (5, 1, 1, 20)
    assert body["items"][0] == db.session.scalar(select(User).filter_by(username="admin")).to_dict()


def test_list_filters(client: FlaskClient, crowd, admin_auth):
    assert names(listing(client, admin_auth, q="CORP")) == ["erin"]
    assert names(listing(client, admin_auth, q="AR")) == ["carol"]
    assert names(listing(client, admin_auth, q="_")) == ["dave_x"]
    assert names(listing(client, admin_auth, q="%")) == []
    assert names(listing(client, admin_auth, role="admin")) == ["admin", "dave_x"]
    assert names(listing(client, admin_auth, active="false")) == ["carol"]
    assert listing(client, admin_auth, active="true", role="user")["total"] == 2


def test_list_sort(client: FlaskClient, crowd, admin_auth):
    assert names(listing(client, admin_auth, sort="-username"))[:2] == ["erin", "dave_x"]
    assert names(listing(client, admin_auth, sort="role,-username")) == [
        "dave_x", "admin", "erin", "carol", "bob"]
    assert names(listing(client, admin_auth, sort="-id"))[0] == "erin"


def test_list_pages(client: FlaskClient, crowd, admin_auth):
    first = listing(client, admin_auth, per_page=2)
    last = listing(client, admin_auth, per_page=2, page=3)
    assert (first["total"], first["pages"], names(first)) == (5, 3, ["admin", "bob"])
    assert names(last) == ["erin"]
    assert listing(client, admin_auth, per_page=2, page=9)["items"] == []
    assert listing(client, admin_auth, per_page=100, page=2**31 - 1)["items"] == []
    assert listing(client, admin_auth, per_page=10_000)["per_page"] == 100


@pytest.mark.parametrize(
    "query,field",
    [({"sort": "password_hash"}, "sort"), ({"sort": "-"}, "sort"), ({"page": "0"}, "page"),
     ({"page": "x"}, "page"), ({"page": str(10**20)}, "page"),
     ({"page": str(2**31)}, "page"), ({"per_page": "-1"}, "per_page"),
     ({"role": "root"}, "role"), ({"active": "maybe"}, "active")],
)
def test_list_rejects_bad_parameters(client: FlaskClient, admin_auth, query, field):
    response = client.get("/api/users", headers=admin_auth, query_string=query)
    assert response.status_code == 400
    assert response.get_json()["errors"][field]


@pytest.mark.parametrize(
    "method,url,status",
    [("put", "/api/users", 405), ("post", "/api/users/1", 405), ("get", "/api/nothing", 404)],
)
def test_routing_errors_are_json(client: FlaskClient, admin_auth, method, url, status):
    response = getattr(client, method)(url, headers=admin_auth)
    assert response.status_code == status
    assert response.is_json and response.get_json()["error"]
