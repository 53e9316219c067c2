"""POST /api/users/bulk and GET /api/users/export."""

from __future__ import annotations

import csv
import io

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.extensions import db
from app.live.changelog import current_cursor
from app.models import ApiToken, User, UserChange
from tests.api_helpers import bearer, user_count
from tests.conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES
HEADER = ["id", "username", "email", "role", "active", "version", "created_at", "updated_at"]


@pytest.fixture
def auth(admin: User) -> dict[str, str]:
    return bearer(admin)


@pytest.fixture
def trio(make_user) -> list[int]:
    return [make_user(name).id for name in ("alice", "carol", "dave")]


def bulk(client: FlaskClient, auth, **body):
    return client.post("/api/users/bulk", headers=auth, json=body)


def state(ids: list[int]) -> list[tuple]:
    db.session.expire_all()
    users = db.session.scalars(select(User).where(User.id.in_(ids)).order_by(User.id))
    return [(u.role, u.active, u.version) for u in users]


def test_bulk_deactivate_activate_set_role_delete(client, auth, trio):
    cursor = current_cursor()
    response = bulk(client, auth, ids=[*trio, trio[0]], action="deactivate")
    assert response.status_code == 200 and response.get_json() == {"count": 3}
    assert state(trio) == [("user", False, 2)] * 3
    changes = db.session.scalars(select(UserChange).where(UserChange.cursor > cursor)).all()
    assert sorted(c.user_id for c in changes) == trio
    assert {(c.op, c.actor, c.origin) for c in changes} == {("update", "admin", "api")}

    # Users already as wanted are left alone: dave, activated first, gets no new change.
    bulk(client, auth, ids=[trio[2]], action="activate")
    assert bulk(client, auth, ids=trio, action="activate").get_json() == {"count": 3}
    assert state(trio) == [("user", True, 3)] * 3

    assert bulk(client, auth, ids=trio[:2], action="set_role", role="admin").status_code == 200
    assert [s[0] for s in state(trio)] == ["admin", "admin", "user"]

    token_owner = db.session.get(User, trio[0])
    bearer(token_owner)
    assert bulk(client, auth, ids=trio, action="delete").get_json() == {"count": 3}
    assert state(trio) == [] and user_count() == 1
    assert db.session.scalars(select(ApiToken).filter_by(user_id=trio[0])).all() == []
    deletes = db.session.scalars(select(UserChange).where(UserChange.op == "delete")).all()
    assert sorted(c.user_id for c in deletes) == trio


def test_bulk_deactivate_ends_the_sessions(client, auth, trio):
    epochs = [db.session.get(User, i).session_epoch for i in trio]
    bulk(client, auth, ids=trio, action="deactivate")
    assert state(trio) and [db.session.get(User, i).session_epoch for i in trio] == [
        e + 1 for e in epochs]


def test_bulk_is_all_or_nothing_on_missing_ids(client, auth, trio):
    before = state(trio)
    cursor = current_cursor()
    response = bulk(client, auth, ids=[trio[0], 9999, trio[1], 8888], action="delete")
    assert response.status_code == 404
    body = response.get_json()
    assert body["missing"] == [8888, 9999] and body["error"]
    assert state(trio) == before and current_cursor() == cursor


def test_bulk_last_admin_rule_on_the_whole_set(client, auth, admin, make_user):
    other = make_user("root", role="admin")
    alice = make_user("alice")
    cursor = current_cursor()
    for action, role in (("deactivate", None), ("delete", None), ("set_role", "user")):
        body = {"ids": [admin.id, other.id, alice.id], "action": action}
        if role:
            body["role"] = role
        response = client.post("/api/users/bulk", headers=auth, json=body)
        assert response.status_code == 409, action
        assert "admin" in response.get_json()["error"]
    assert current_cursor() == cursor
    assert state([admin.id, other.id, alice.id]) == [
        ("admin", True, 1), ("admin", True, 1), ("user", True, 1)]
    # One of the two admins may go: another stays.
    assert bulk(client, auth, ids=[other.id, alice.id], action="delete").status_code == 200
    # Promoting is never refused.
    assert bulk(client, auth, ids=[admin.id], action="set_role", role="admin").status_code == 200


@pytest.mark.parametrize("body", [
    {}, {"ids": [], "action": "delete"}, {"ids": "1", "action": "delete"},
    {"ids": [1, "2"], "action": "delete"}, {"ids": [True], "action": "delete"},
    {"ids": [1], "action": "explode"}, {"ids": [1], "action": "set_role"},
    {"ids": [1], "action": "set_role", "role": "root"},
    {"ids": [1], "action": "delete", "role": "admin"},
    {"ids": [1], "action": "delete", "extra": True}, {"ids": [2**40], "action": "delete"},
])
def test_bulk_refuses_bad_bodies(client, auth, body):
    response = bulk(client, auth, **body)
    assert response.status_code == 400, body
    assert response.get_json()["errors"]


def test_bulk_needs_an_admin(client, bob, trio):
    assert bulk(client, bearer(bob), ids=trio, action="delete").status_code == 403
    assert bulk(client, {}, ids=trio, action="delete").status_code == 401
    assert len(state(trio)) == 3


# --- export --------------------------------------------------------------------------------

def export(client: FlaskClient, auth, query: str = ""):
    response = client.get(f"/api/users/export{query}", headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_export_header_values_and_streaming(client, auth, make_user):
    make_user("Zed", role="admin", active=False)
    make_user("-A1", email="=cmd|'/c'!a0@example.com")  # the API's values stay exact
    response = export(client, auth)
    assert response.mimetype == "text/csv"
    assert response.is_streamed and "Content-Length" not in response.headers
    assert "attachment" in response.headers["Content-Disposition"]
    header, *rows = rows_of(response)
    assert header == HEADER
    listed = client.get("/api/users", headers=auth).get_json()["items"]
    assert rows == [[str(u["id"]), u["username"], u["email"], u["role"],
                     "true" if u["active"] else "false", str(u["version"]),
                     u["created_at"], u["updated_at"]] for u in listed]
    assert ["-A1", "=cmd|'/c'!a0@example.com"] in [row[1:3] for row in rows]
    assert rows[-2][1:5] == ["Zed", "zed@example.com", "admin", "false"]


def test_export_follows_the_list_order_and_filters_across_batches(app, client, auth):
    # More rows than one batch, inserted by plain SQL, with ties in the sort.
    names = [f"{'ab'[i % 2]}user{i:04d}" for i in range(2500)]
    db.session.execute(text(
        "INSERT INTO users (username, email, role, active) VALUES (:u, :e, :r, :a)"),
        [{"u": n, "e": f"{n}@example.com", "r": "admin" if i % 3 == 0 else "user",
          "a": i % 5 != 0} for i, n in enumerate(names)])
    db.session.commit()
    for query in ("?sort=-role,username", "?sort=active,-id", "?q=BUSER1&sort=-email",
                  "?role=admin&active=false&sort=created_at", "?sort=-updated_at"):
        exported = [row[0] for row in rows_of(export(client, auth, query + "&page=3"))[1:]]
        listed = []
        page = 1
        while True:
            body = client.get(f"/api/users{query}&per_page=100&page={page}",
                              headers=auth).get_json()
            listed += [str(u["id"]) for u in body["items"]]
            if page >= body["pages"]:
                break
            page += 1
        assert exported == listed, query
        assert len(exported) == body["total"] and len(set(exported)) == len(exported)


def test_export_errors_as_the_list(client, auth):
    response = client.get("/api/users/export?sort=password", headers=auth)
    assert response.status_code == 400 and "sort" in response.get_json()["errors"]
    assert client.get("/api/users/export").status_code == 401
    assert export(client, auth, "?page=x&per_page=0").status_code == 200  # ignored


def test_export_of_100k_rows_is_chunked_on_a_real_server(live_server, admin, db_url):
    import requests

    if not db_url.startswith("sqlite"):
        pytest.skip("one database is enough for the transport")
    db.session.execute(text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
        "INSERT INTO users (username, email) SELECT 'bulk' || i, 'bulk' || i || '@example.com' "
        "FROM n"))
    db.session.commit()
    with requests.get(f"{live_server.url}/api/users/export", params={"sort": "-username"},
                      headers=bearer(admin), stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in response.headers
        chunks = list(response.iter_content(chunk_size=None))
    assert len(chunks) > 10
    header, *rows = csv.reader(io.StringIO(b"".join(chunks).decode()))
    assert header == HEADER and len(rows) == 100_001
    names = [row[1] for row in rows]
    assert names == sorted(names, key=str.lower, reverse=True)
