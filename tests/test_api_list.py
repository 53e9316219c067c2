"""The JSON API's users list: filters, sort, pages, bad parameters, routing errors as JSON."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import User
from tests.api_helpers import assert_no_secrets, bearer
from tests.conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES


@pytest.fixture
def admin_auth(admin: User) -> dict[str, str]:
    return bearer(admin)


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
