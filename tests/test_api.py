"""The JSON API's users resource: CRUD, validation, optimistic locking, listing."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import ApiToken, User, UserChange
from tests.api_helpers import NEW_USER, assert_no_secrets, basic, bearer, user_count
from tests.conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES


@pytest.fixture
def admin_auth(admin: User) -> dict[str, str]:
    return bearer(admin)


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


@pytest.mark.parametrize("body", ["[]", '"dave"', "null", "42", "{", "{'a': 1}", "",
                                  '{"username": ' + "[" * 5000 + "]" * 5000 + "}"])
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


def test_a_nul_in_a_json_body_is_a_400(client: FlaskClient, admin_auth):
    response = client.post("/api/users", headers=admin_auth,
                           json={**NEW_USER, "password": "nul\x00-in-the-password"})
    assert response.status_code == 400 and "NUL" in response.get_json()["errors"]["_schema"][0]
    assert user_count() == 1


@pytest.mark.parametrize("username", ["dave\n", "dave\r", "\ndave", "d" * 32 + "\n"])
def test_a_username_is_checked_whole(client: FlaskClient, admin_auth, make_user, username):
    """No trailing newline slips past the rule (nor a name one character too long)."""
    response = client.post("/api/users", headers=admin_auth, json={**NEW_USER,
                                                                   "username": username})
    assert response.status_code == 400 and response.get_json()["errors"]["username"]
    assert user_count() == 1
    bob = make_user("bob")
    response = client.patch(f"/api/users/{bob.id}", headers=admin_auth,
                            json={"version": bob.version, "username": username})
    assert response.status_code == 400 and response.get_json()["errors"]["username"]


def test_a_name_taken_in_another_case_meanwhile_is_409(client: FlaskClient, admin_auth,
                                                       make_user, monkeypatch):
    """Two writers both pass the app's check before either commits: the database's index
    on the folded username refuses the second, a 409 like any other duplicate."""
    monkeypatch.setattr("app.users.service._check_unique", lambda *args, **kwargs: None)
    response = client.post("/api/users", headers=admin_auth, json={**NEW_USER,
                                                                   "username": "ADMIN"})
    assert response.status_code == 409 and response.get_json()["errors"]["username"]
    assert user_count() == 1
    make_user("emailfan")  # PostgreSQL's message quotes the name: "email" is in it
    response = client.post("/api/users", headers=admin_auth, json={**NEW_USER,
                                                                   "username": "EmailFan"})
    assert response.status_code == 409 and set(response.get_json()["errors"]) == {"username"}
    bob = make_user("bob")
    response = client.patch(f"/api/users/{bob.id}", headers=admin_auth,
                            json={"version": bob.version, "username": "Admin"})
    assert response.status_code == 409 and response.get_json()["errors"]["username"]
    assert client.get(f"/api/users/{bob.id}", headers=admin_auth).get_json()["username"] == "bob"


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


def test_patch_that_changes_nothing_writes_nothing(client: FlaskClient, make_user,
                                                   admin_auth):
    user = make_user("dave")
    fetched = client.get(f"/api/users/{user.id}", headers=admin_auth).get_json()
    logged = db.session.scalar(select(func.count()).select_from(UserChange))
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth, json=fetched)
    assert response.status_code == 200 and response.get_json() == fetched
    assert db.session.scalar(select(func.count()).select_from(UserChange)) == logged
    # One changed field among unchanged ones is one change.
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={**fetched, "role": "admin"})
    assert response.get_json()["version"] == fetched["version"] + 1
    assert db.session.scalar(select(func.count()).select_from(UserChange)) == logged + 1


@pytest.mark.parametrize("version", [0, -1, 2**63, -(2**70)])
def test_patch_with_a_version_no_user_has_is_409(client: FlaskClient, make_user, admin_auth,
                                                 version):
    user = make_user("dave")
    response = client.patch(f"/api/users/{user.id}", headers=admin_auth,
                            json={"version": version, "email": "never@example.com"})
    assert response.status_code == 409
    assert response.get_json()["current"]["email"] == "dave@example.com"


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
