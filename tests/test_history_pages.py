"""The history page and its Revert buttons (Flask's test client, CSRF on)."""

from __future__ import annotations

import re
from html import unescape

from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.extensions import db
from app.live.capture import set_change_context
from app.models import User, UserChange
from app.users.service import update_user
from tests.conftest import BOTH_DATABASES, csrf_token

pytestmark = BOTH_DATABASES


def rows(html: str) -> list[tuple[str, str]]:
    """(cursor, op) of each history row, in page order."""
    return re.findall(r'<tr data-cursor="(\d+)" data-op="(\w+)">', html)


def revert(client: FlaskClient, user_id: int, cursor: int, version: str = "") -> str:
    token = csrf_token(client, f"/users/{user_id}/history")
    response = client.post(f"/users/{user_id}/revert", data={
        "csrf_token": token, "cursor": str(cursor), "version": version})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/users/{user_id}/history")
    return unescape(client.get(response.headers["Location"]).get_data(as_text=True))


def test_history_page_newest_first_with_who_and_diffs(admin_client, make_user):
    alice = make_user("alice")
    set_change_context("admin", "ui")
    update_user(alice, {"email": "alice@new.example"}, alice.version)
    db.session.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": alice.id})
    db.session.commit()
    html = unescape(admin_client.get(f"/users/{alice.id}/history").get_data(as_text=True))
    assert [op for _, op in rows(html)] == ["update", "update", "insert"]
    cursors = [int(c) for c, _ in rows(html)]
    assert cursors == sorted(cursors, reverse=True)
    newest, ui = html.split('<tr data-cursor="')[1:3]
    assert 'data-field="origin">sql' in newest and "<del>user</del>" in newest
    assert "<ins>admin</ins>" in newest
    assert 'data-field="actor">admin' in ui and 'data-field="origin">ui' in ui
    assert "<del>alice@example.com</del>" in ui and "<ins>alice@new.example</ins>" in ui
    assert html.count("Revert to this") == 3


def test_history_is_escaped(admin_client, make_user):
    db.session.execute(text("INSERT INTO users (username, email) VALUES "
                            "('<b>x</b>', '<script>@example.com')"))
    db.session.commit()
    user_id = db.session.scalar(select(User.id).where(User.email == "<script>@example.com"))
    html = admin_client.get(f"/users/{user_id}/history").get_data(as_text=True)
    assert "<script>@" not in html and "&lt;script&gt;@example.com" in html
    assert "<b>x</b>" not in html


def test_non_admin_sees_history_without_revert(user_client, bob, admin_client):
    html = user_client.get(f"/users/{bob.id}/history").get_data(as_text=True)
    assert rows(html) and "Revert to this" not in html
    response = user_client.post(f"/users/{bob.id}/revert", data={"cursor": "1"})
    assert response.status_code in (400, 403)
    assert user_client.get("/users/99999/history").status_code == 404


def test_dashboard_and_edit_page_link_to_history(admin_client, bob):
    dashboard = admin_client.get("/").get_data(as_text=True)
    assert f'href="/users/{bob.id}/history"' in dashboard
    assert 'data-href-template="/users/__ID__/history"' in dashboard
    assert 'data-history-template="/users/__ID__/history"' in dashboard
    edit = admin_client.get(f"/users/{bob.id}/edit").get_data(as_text=True)
    assert f'href="/users/{bob.id}/history"' in edit


def test_delete_then_undo_from_the_flash_and_the_history_page(admin_client, bob):
    bob_id = bob.id
    token = csrf_token(admin_client, f"/users/{bob_id}/delete")
    response = admin_client.post(f"/users/{bob_id}/delete", data={"csrf_token": token})
    flashed = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "User bob deleted." in flashed
    assert f'<a href="/users/{bob_id}/history">History and undo</a>' in flashed

    html = admin_client.get(f"/users/{bob_id}/history").get_data(as_text=True)
    assert 'id="deleted-badge"' in html and "History of bob" in html
    assert [op for _, op in rows(html)] == ["delete", "insert"]
    assert "Restore as this" in html
    insert_cursor = int(rows(html)[1][0])

    page = revert(admin_client, bob_id, insert_cursor)
    assert "User bob reverted to change" in page
    db.session.expire_all()
    restored = db.session.get(User, bob_id)
    assert restored is not None and restored.username == "bob"
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.op, change.user_id, change.actor, change.origin) == (
        "insert", bob_id, "admin", "ui")


def test_revert_conflicts_are_flashed(admin_client, make_user):
    alice = make_user("alice")
    insert = db.session.scalar(select(UserChange.cursor).where(UserChange.user_id == alice.id))
    update_user(alice, {"username": "alicia"}, alice.version)
    make_user("alice", email="a2@example.com")
    page = revert(admin_client, alice.id, insert, version="2")
    assert "Not reverted: This username is already taken." in page
    page = revert(admin_client, alice.id, insert, version="1")  # stale
    assert "Not reverted" in page and "changed since you loaded it" in page
    page = revert(admin_client, alice.id, 10**9)
    assert "Not reverted: no insert or update" in page


def test_read_only_detail_page_for_non_admins(user_client, admin, bob):
    dashboard = user_client.get("/").get_data(as_text=True)
    assert f'href="/users/{admin.id}"' in dashboard and 'data-action="edit"' not in dashboard
    html = user_client.get(f"/users/{admin.id}").get_data(as_text=True)
    assert "<h1>admin</h1>" in html and 'data-field="email">admin@example.com' in html
    assert f'href="/users/{admin.id}/history"' in html
    assert f"/users/{admin.id}/edit" not in html and "<form method=\"post\" action=\"/users" \
        not in html
    assert user_client.get("/users/99999").status_code == 404


def test_history_shows_booleans_as_yes_no(admin_client, bob):
    update_user(bob, {"active": False}, bob.version)
    html = admin_client.get(f"/users/{bob.id}/history").get_data(as_text=True)
    assert "<del>yes</del>" in html and "<ins>no</ins>" in html and "True" not in html


def test_a_long_history_comes_in_pages_of_50_newest_first(admin_client, make_user):
    """120 changes: pages of 50, 50 and 20, each linking to the older ones and back to
    the newest; together every change once, newest first. A bad cursor shows the newest."""
    alice = make_user("alice")
    db.session.execute(text(  # 119 updates by plain SQL, one statement each
        "UPDATE users SET email = 'a' || version || '@example.com' WHERE id = :id"),
        [{"id": alice.id}] * 119)
    db.session.commit()
    everything = db.session.scalars(select(UserChange.cursor).where(
        UserChange.user_id == alice.id).order_by(UserChange.cursor.desc())).all()
    assert len(everything) == 120
    seen, url, pages = [], f"/users/{alice.id}/history", []
    while url:
        html = unescape(admin_client.get(url).get_data(as_text=True))
        page = [int(c) for c, _ in rows(html)]
        pages.append(len(page))
        seen += page
        assert ("Newest changes" in html) == (len(pages) > 1)
        older = re.search(r'href="([^"]+)" rel="next"', html)
        url = older and older.group(1)
    assert pages == [50, 50, 20] and seen == everything
    for bad in ("x", "0", "-5", "99999999999999999999", "9" * 5000):
        html = admin_client.get(f"/users/{alice.id}/history?before={bad}").get_data(as_text=True)
        assert [int(c) for c, _ in rows(html)] == everything[:50]
