"""GET /api/users/<id>/history and POST /api/users/<id>/revert (undo of a delete too)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.extensions import db
from app.live.capture import set_change_context
from app.live.changelog import current_cursor
from app.models import User
from app.users.service import update_user
from tests.api_helpers import bearer
from tests.conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES
NS = "/users"


@pytest.fixture
def auth(admin: User) -> dict[str, str]:
    return bearer(admin)


def history(client: FlaskClient, auth, user_id: int) -> list[dict]:
    response = client.get(f"/api/users/{user_id}/history", headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def plain_sql(statement: str, **params) -> None:
    """A write by another program: no change context, straight SQL."""
    db.session.execute(text(statement), params)
    db.session.commit()


def test_history_oldest_first_with_before_actor_origin(client, auth, make_user):
    alice = make_user("alice")
    set_change_context("admin", "ui")
    update_user(alice, {"email": "alice@new.example", "role": "admin"}, alice.version)
    plain_sql("UPDATE users SET username = 'alice2' WHERE id = :id", id=alice.id)
    client.patch(f"/api/users/{alice.id}", headers=auth, json={"active": False, "version": 3})

    items = history(client, auth, alice.id)
    assert [c["op"] for c in items] == ["insert", "update", "update", "update"]
    assert [c["cursor"] for c in items] == sorted(c["cursor"] for c in items)
    assert all(c["id"] == alice.id and c["at"] for c in items)
    insert, ui, sql, api = items
    assert insert["before"] is None and insert["row"]["username"] == "alice"
    assert (insert["actor"], insert["origin"]) == (None, "app")
    assert ui["before"] == {"email": "alice@example.com", "role": "user"}
    assert ui["row"]["email"] == "alice@new.example" and ui["row"]["version"] == 2
    assert (ui["actor"], ui["origin"]) == ("admin", "ui")
    assert sql["before"] == {"username": "alice"} and sql["row"]["username"] == "alice2"
    assert (sql["actor"], sql["origin"]) == (None, "sql")
    assert api["before"] == {"active": True} and api["row"]["active"] is False
    assert (api["actor"], api["origin"]) == ("admin", "api")
    assert all("password" not in str(c) for c in items)


def test_history_in_pages_with_after_and_limit(client, auth, make_user):
    """``limit`` pages through the history oldest first: each answer says which cursor
    to ask after next, null after the last; without it, every change at once."""
    alice = make_user("alice")
    for n in range(6):
        plain_sql("UPDATE users SET email = :email WHERE id = :id",
                  email=f"a{n}@example.com", id=alice.id)
    everything = [c["cursor"] for c in history(client, auth, alice.id)]
    assert len(everything) == 7
    got, after = [], 0
    while after is not None:
        answer = client.get(f"/api/users/{alice.id}/history?after={after}&limit=3",
                            headers=auth).get_json()
        assert len(answer["items"]) <= 3
        got += [c["cursor"] for c in answer["items"]]
        after = answer["next_after"]
    assert got == everything
    past = client.get(f"/api/users/{alice.id}/history?after={everything[-1]}", headers=auth)
    assert past.status_code == 200 and past.get_json() == {"items": []}
    for query, field in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                         ("after=-1", "after"), ("after=1.5", "after"),
                         ("after=" + "9" * 5000, "after"), (f"after={2**63}", "after")]:
        response = client.get(f"/api/users/{alice.id}/history?{query}", headers=auth)
        assert response.status_code == 400 and field in response.get_json()["errors"]


def test_history_of_a_deleted_user_and_of_an_unknown_id(client, auth, make_user):
    alice = make_user("alice")
    assert client.delete(f"/api/users/{alice.id}", headers=auth).status_code == 204
    items = history(client, auth, alice.id)
    assert [c["op"] for c in items] == ["insert", "delete"]
    delete = items[-1]
    assert delete["row"] is None
    assert delete["before"] == {"username": "alice", "email": "alice@example.com",
                                "role": "user", "active": True}
    assert (delete["actor"], delete["origin"]) == ("admin", "api")

    for missing in (alice.id + 100, 2**40):
        response = client.get(f"/api/users/{missing}/history", headers=auth)
        assert response.status_code == 404 and "error" in response.get_json()
    assert client.get(f"/api/users/{alice.id}/history").status_code == 401


def test_history_is_readable_by_any_user(client, bob):
    assert [c["op"] for c in history(client, bearer(bob), bob.id)] == ["insert"]


def test_revert_an_update(client, auth, make_user):
    alice = make_user("alice")
    [insert] = history(client, auth, alice.id)
    client.patch(f"/api/users/{alice.id}", headers=auth,
                 json={"username": "alicia", "email": "a@x.example", "active": False,
                       "version": 1})
    response = client.post(f"/api/users/{alice.id}/revert", headers=auth,
                           json={"cursor": insert["cursor"]})
    assert response.status_code == 200, response.get_json()
    user = response.get_json()
    assert (user["username"], user["email"], user["role"], user["active"]) == (
        "alice", "alice@example.com", "user", True)
    assert user["version"] == 3
    last = history(client, auth, alice.id)[-1]
    assert last["op"] == "update" and last["cursor"] == current_cursor()
    assert last["before"] == {"username": "alicia", "email": "a@x.example", "active": False}
    assert (last["actor"], last["origin"]) == ("admin", "api")


def test_revert_to_the_current_state_is_still_one_new_change(client, auth, make_user):
    alice = make_user("alice")
    [insert] = history(client, auth, alice.id)
    user = client.post(f"/api/users/{alice.id}/revert", headers=auth,
                       json={"cursor": insert["cursor"]}).get_json()
    assert user["version"] == 2
    assert [c["op"] for c in history(client, auth, alice.id)] == ["insert", "update"]


def test_revert_with_a_stale_version_is_409_with_the_current_user(client, auth, make_user):
    alice = make_user("alice")
    [insert] = history(client, auth, alice.id)
    client.patch(f"/api/users/{alice.id}", headers=auth, json={"role": "admin", "version": 1})
    response = client.post(f"/api/users/{alice.id}/revert", headers=auth,
                           json={"cursor": insert["cursor"], "version": 1})
    assert response.status_code == 409
    assert response.get_json()["current"]["version"] == 2
    assert db.session.get(User, alice.id).role == "admin"


def test_undo_a_delete_brings_the_same_id_back_as_an_insert(app, client, auth, make_user,
                                                            sockets, admin):
    alice = make_user("alice", role="admin")
    alice_id = alice.id
    client.patch(f"/api/users/{alice_id}", headers=auth, json={"email": "al@x.example",
                                                              "version": 1})
    carol = make_user("carol")
    assert client.delete(f"/api/users/{alice_id}", headers=auth).status_code == 204
    sio = sockets(NS, admin)
    sio.emit("subscribe", {"since": current_cursor()}, namespace=NS, callback=True)
    update = history(client, auth, alice_id)[1]

    response = client.post(f"/api/users/{alice_id}/revert", headers=auth,
                           json={"cursor": update["cursor"]})
    assert response.status_code == 200, response.get_json()
    user = response.get_json()
    assert user["id"] == alice_id
    assert (user["username"], user["email"], user["role"], user["active"]) == (
        "alice", "al@x.example", "admin", True)
    assert user["version"] == 3  # the deleted row's version + 1
    restored = db.session.get(User, alice_id)
    assert restored.password_hash is None  # the log keeps no hash: an admin sets a new one

    app.extensions["live_feed"].poll_once()
    received = [e for e in sio.get_received(NS) if e["name"] in ("change", "changes")]
    changes = [c for e in received for c in (e["args"][0] if e["name"] == "changes"
                                             else [e["args"][0]])]
    assert [(c["op"], c["id"], c["row"]["username"]) for c in changes] == [
        ("insert", alice_id, "alice")]
    last = history(client, auth, alice_id)[-1]
    assert (last["op"], last["actor"], last["origin"]) == ("insert", "admin", "api")

    # The id stays taken afterwards: a new user gets a fresh one.
    new = client.post("/api/users", headers=auth, json={
        "username": "dave", "email": "dave@example.com", "password": "s3cret-enough"})
    assert new.get_json()["id"] > carol.id > alice_id


def test_undo_a_delete_of_a_user_inserted_by_plain_sql(client, auth):
    plain_sql("INSERT INTO users (username, email) VALUES ('sqlu', 'sqlu@example.com')")
    user_id = db.session.scalar(select(User.id).where(User.username == "sqlu"))
    plain_sql("DELETE FROM users WHERE id = :id", id=user_id)
    insert = history(client, auth, user_id)[0]
    assert (insert["origin"], insert["actor"]) == ("sql", None)
    response = client.post(f"/api/users/{user_id}/revert", headers=auth,
                           json={"cursor": insert["cursor"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["username"] == "sqlu"


def test_revert_conflicts_when_the_old_username_is_taken(client, auth, make_user):
    alice = make_user("alice")
    insert = history(client, auth, alice.id)[0]
    client.patch(f"/api/users/{alice.id}", headers=auth, json={"username": "alicia",
                                                              "version": 1})
    make_user("ALICE", email="other@example.com")
    response = client.post(f"/api/users/{alice.id}/revert", headers=auth,
                           json={"cursor": insert["cursor"]})
    assert response.status_code == 409
    assert "username" in response.get_json()["errors"]
    assert db.session.get(User, alice.id).username == "alicia"

    # Deleted, then its old email taken by someone else: the restore is refused too.
    client.delete(f"/api/users/{alice.id}", headers=auth)
    make_user("erin", email="alice@example.com")
    before = current_cursor()
    response = client.post(f"/api/users/{alice.id}/revert", headers=auth,
                           json={"cursor": insert["cursor"]})
    assert response.status_code == 409
    assert set(response.get_json()["errors"]) == {"username", "email"}
    assert db.session.get(User, alice.id) is None and current_cursor() == before


def test_revert_obeys_the_last_admin_rule(client, auth, admin, make_user):
    alice = make_user("alice")
    insert = history(client, auth, alice.id)[0]  # alice as a plain user
    client.patch(f"/api/users/{alice.id}", headers=auth, json={"role": "admin", "version": 1})
    alice_auth = bearer(alice)
    client.patch(f"/api/users/{admin.id}", headers=alice_auth, json={"role": "user",
                                                                    "version": 1})
    response = client.post(f"/api/users/{alice.id}/revert", headers=alice_auth,
                           json={"cursor": insert["cursor"]})
    assert response.status_code == 409
    assert "admin" in response.get_json()["error"]
    assert db.session.get(User, alice.id).role == "admin"


def test_revert_to_a_cursor_of_another_user_or_a_delete_is_404(client, auth, make_user):
    alice, carol = make_user("alice"), make_user("carol")
    foreign = history(client, auth, carol.id)[0]["cursor"]
    client.delete(f"/api/users/{carol.id}", headers=auth)
    delete = history(client, auth, carol.id)[-1]["cursor"]
    for user_id, cursor in ((alice.id, foreign), (carol.id, delete), (alice.id, 10**9)):
        response = client.post(f"/api/users/{user_id}/revert", headers=auth,
                               json={"cursor": cursor})
        assert response.status_code == 404, (user_id, cursor)
        assert "error" in response.get_json()


def test_revert_refuses_bad_bodies_and_non_admins(client, auth, make_user, bob):
    insert = history(client, auth, bob.id)[0]
    for body in ({}, {"cursor": "1"}, {"cursor": True}, {"cursor": 1, "extra": 1},
                 {"cursor": 1, "version": "2"}):
        response = client.post(f"/api/users/{bob.id}/revert", headers=auth, json=body)
        assert response.status_code == 400, body
        assert response.get_json()["errors"]
    response = client.post(f"/api/users/{bob.id}/revert", headers=bearer(bob),
                           json={"cursor": insert["cursor"]})
    assert response.status_code == 403
