"""Writes that bypass row triggers still reach the change stream (migration 0006): a real
server, subscribers of the plain stream and of a live view, and another program writing
with plain SQL: PostgreSQL's TRUNCATE, SQLite's INSERT OR REPLACE."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from sqlalchemy import func, select, text

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import User, UserChange
from app.users.counts import table_counts
from tests.live_client import LiveClient
from tests.test_live_server import plain_sql
from tests.test_live_views_server import ViewClient

pytestmark = pytest.mark.server
VIEW = {"sort": "username", "per_page": 5}


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def logged(after: int) -> list[tuple[str, int]]:
    db.session.rollback()
    return [(c.op, c.user_id) for c in db.session.scalars(
        select(UserChange).where(UserChange.cursor > after).order_by(UserChange.cursor))]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_truncate_users_is_a_delete_of_every_row(live_server, db_url, admin, bob, make_user):
    others = [make_user(f"user{i}") for i in range(5)]
    everyone = sorted([admin.id, bob.id, *(u.id for u in others)])
    watcher = LiveClient(live_server.url, issue_token(admin)).connect()
    bobs_socket = LiveClient(live_server.url, issue_token(bob)).connect()
    view = ViewClient(live_server.url, issue_token(admin), VIEW)
    try:
        start = watcher.subscribe(None)["cursor"]
        assert view.page() == view.api()

        with pytest.raises(subprocess.CalledProcessError):  # tokens, chat reference users
            plain_sql(db_url, "TRUNCATE users")
        assert logged(start) == []  # refused: nothing logged either
        plain_sql(db_url, "TRUNCATE users RESTART IDENTITY CASCADE")
        changes = watcher.wait_for(len(everyone))
        assert [(c["op"], c["id"], c["row"]) for c in changes] == [
            ("delete", i, None) for i in everyone]
        assert [c["cursor"] for c in changes] == list(range(start + 1, start + 1 + len(everyone)))
        assert changes[0]["before"]["username"] == "admin" and changes[0]["origin"] == "sql"
        # The deleted users' sockets are closed, as after a DELETE.
        for client in (watcher, bobs_socket):
            assert client.disconnected.wait(5)
        wait_until(lambda: not view.sio.connected)
        db.session.rollback()
        assert table_counts() == {"total": 0, "active": 0, "admins": 0}

        # A new admin: never an old id, although RESTART IDENTITY reset the sequence.
        made = live_server.flask("users", "create", "root", "--email", "root@example.com",
                                 "--password", "long-enough-pw", "--admin")
        root_id = int(made.stdout.strip())
        assert root_id > max(everyone)
        token = live_server.flask("tokens", "issue", "root").stdout.strip()
        # A client that resumes from the old cursor replays the deletes: no ghost row.
        resumed = LiveClient(live_server.url, token).connect()
        try:
            replay = resumed.subscribe(start)
            assert [(c["op"], c["id"]) for c in replay["changes"]] == [
                *(("delete", i) for i in everyone), ("insert", root_id)]
        finally:
            resumed.close()
        fresh = ViewClient(live_server.url, token, VIEW)
        try:
            assert fresh.page() == fresh.api() == {"ids": [root_id], "total": 1, "versions": [1]}
        finally:
            fresh.close()
        db.session.rollback()
        assert table_counts() == {"total": 1, "active": 1, "admins": 1}
    finally:
        for client in (watcher, bobs_socket):
            client.close()
        if view.sio.connected:
            view.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_insert_or_replace_deletes_the_replaced_row(live_server, db_url, admin, make_user):
    users = {name: make_user(name) for name in ("olduser", "other", "third", "zed")}
    ids = {name: user.id for name, user in users.items()}
    headers = {"Authorization": f"Bearer {issue_token(admin)}"}
    watcher = LiveClient(live_server.url, issue_token(admin)).connect()
    view = ViewClient(live_server.url, issue_token(admin), VIEW)
    try:
        start = watcher.subscribe(None)["cursor"]
        # Another program, with the pragma docs/live.md asks for: the replaced row's
        # delete is logged; and its plain UPDATEs are still logged once each.
        plain_sql(db_url, "PRAGMA recursive_triggers=ON",
                  "INSERT OR REPLACE INTO users (username, email) "
                  "VALUES ('olduser', 'replaced@example.com')",
                  f"UPDATE users SET email = 'other2@example.com' WHERE id = {users['other'].id}")
        new_id = db.session.scalar(select(User.id).where(User.username == "olduser"))
        assert new_id > max(ids.values())
        changes = watcher.wait_for(3)
        assert [(c["op"], c["id"]) for c in changes] == [
            ("delete", ids["olduser"]), ("insert", new_id), ("update", ids["other"])]
        assert changes[2]["before"] == {"email": "other@example.com"}
        assert changes[2]["row"]["version"] == 2

        # The app's own connections (here this test process's) turn the pragma on.
        db.session.execute(text(
            "INSERT OR REPLACE INTO users (username, email) VALUES ('third', 'third2@ex.org')"))
        db.session.execute(text("UPDATE users SET role = 'admin' WHERE username = 'zed'"))
        db.session.commit()
        third_id = db.session.scalar(select(User.id).where(User.username == "third"))
        changes = watcher.wait_for(6)
        assert [(c["op"], c["id"]) for c in changes[3:]] == [
            ("delete", ids["third"]), ("insert", third_id), ("update", ids["zed"])]
        assert logged(start) == [(c["op"], c["id"]) for c in changes]  # nothing twice
        assert db.session.get(User, ids["zed"]).version == 2

        # No ghost anywhere: not in the view, the API, the counts or the search.
        view.converge()
        assert ids["olduser"] not in view.page()["ids"]
        for gone in (ids["olduser"], ids["third"]):
            assert requests.get(f"{live_server.url}/api/users/{gone}", headers=headers,
                                timeout=10).status_code == 404
        found = requests.get(f"{live_server.url}/api/users", params={"q": "olduser"},
                             headers=headers, timeout=10).json()
        assert [u["id"] for u in found["items"]] == [new_id] and found["total"] == 1
        assert table_counts()["total"] == db.session.scalar(
            select(func.count()).select_from(User)) == 5
    finally:
        watcher.close()
        view.close()
