"""Input the database drivers refuse (NUL characters) is a clean 400, never a 500."""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import ApiToken, User
from tests.conftest import BOTH_DATABASES, PASSWORD, csrf_token, login

pytestmark = BOTH_DATABASES


@pytest.fixture
def admin_auth(admin: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(admin)}"}


def assert_json_400(response) -> None:
    assert response.status_code == 400
    assert response.is_json and "NUL" in response.get_json()["error"]


def assert_page_400(response) -> None:
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "NUL" in html and 'class="topbar"' in html


def test_nul_in_the_api_query_string(client: FlaskClient, admin_auth) -> None:
    for query in ({"q": "ad\x00min"}, {"role": "\x00"}, {"sort": "id\x00"}):
        assert_json_400(client.get("/api/users", headers=admin_auth, query_string=query))
    assert client.get("/api/users", headers=admin_auth, query_string={"q": "adm"}).get_json()[
        "total"] == 1


def test_nul_in_the_basic_username_or_password(client: FlaskClient, admin: User) -> None:
    for pair in ("ad\x00min:" + PASSWORD, "admin:" + PASSWORD + "\x00"):
        basic = base64.b64encode(pair.encode()).decode()
        assert_json_400(client.post("/api/tokens", headers={"Authorization": f"Basic {basic}"}))
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0


def test_nul_in_the_login_form(client: FlaskClient, admin: User) -> None:
    token = csrf_token(client, "/login")
    response = client.post(
        "/login", data={"username": "ad\x00min", "password": PASSWORD, "csrf_token": token})
    assert_page_400(response)
    assert client.get("/").status_code == 302  # still logged out
    assert login(client, "admin").status_code == 302


def test_nul_in_the_list_page_query(client: FlaskClient, admin: User) -> None:
    login(client, "admin")
    assert_page_400(client.get("/", query_string={"q": "ad\x00min"}))
    assert_page_400(client.get("/", query_string={"q": "a", "q\x00": "x"}))
    assert client.get("/", query_string={"q": "admin"}).status_code == 200


def test_nul_in_a_user_form(client: FlaskClient, admin: User) -> None:
    login(client, "admin")
    token = csrf_token(client, "/users/new")
    response = client.post("/users/new", data={
        "csrf_token": token, "username": "dave\x00", "email": "dave@example.com",
        "password": PASSWORD})
    assert_page_400(response)
    assert db.session.scalar(select(func.count()).select_from(User)) == 1

