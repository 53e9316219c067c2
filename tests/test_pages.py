"""The users pages: the live list and the admin forms (CSRF stays on)."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import User, UserChange
from app.users.service import update_user
from tests.conftest import BOTH_DATABASES, PASSWORD, csrf_token


def user_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def stored(user_id: int) -> User | None:
    """The user as the database has it now (not the session's cached copy)."""
    db.session.expire_all()
    return db.session.get(User, user_id)


def usernames(html: str) -> list[str]:
    """The usernames of the rendered table rows, in order."""
    return re.findall(r'<td data-field="username" data-value="[^"]*">([^<]*)</td>', html)


def post_form(client: FlaskClient, url: str, data: dict) -> object:
    """Post ``data`` to the form at ``url`` with the CSRF token that page hands out."""
    return client.post(url, data={"csrf_token": csrf_token(client, url), **data})


def edit_data(user: User, version: int | None = None, **changes: object) -> dict:
    data = {"username": user.username, "email": user.email, "role": user.role,
            "version": str(user.version if version is None else version)}
    if user.active:
        data["active"] = "y"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# --- who sees what ----------------------------------------------------------------------

def test_list_page_is_the_dashboard_for_admins(admin_client: FlaskClient, bob: User) -> None:
    html = admin_client.get("/").get_data(as_text=True)
    cursor = db.session.scalar(select(func.max(UserChange.cursor)))
    assert f'data-cursor="{cursor}"' in html and 'data-is-admin="1"' in html
    assert '<table id="users-table"' in html and '<template id="row-template">' in html
    assert f'<tr data-id="{bob.id}" data-version="{bob.version}">' in html
    assert 'data-href-template="/users/__ID__/edit"' in html
    assert '<div id="live-badge" class="badge" data-state="offline">offline</div>' in html
    assert '<span data-counter="total">2</span>' in html
    assert '<span data-counter="admins">1</span>' in html
    assert 'id="changes-chart"' in html
    assert '<ul id="viewers"></ul>' in html and "js/dashboard.js" in html
    assert 'href="/users/new"' in html and f'href="/users/{bob.id}/edit"' in html
    assert f'href="/users/{bob.id}/delete"' in html and "Log out" in html
    assert "<script>" not in html and " onclick=" not in html


def test_normal_user_reads_only(user_client: FlaskClient, admin: User, bob: User) -> None:
    html = user_client.get("/").get_data(as_text=True)
    assert 'data-is-admin="0"' in html and "admin@example.com" in html
    assert "/users/new" not in html and "/edit" not in html and "/delete" not in html
    for url in ("/users/new", f"/users/{admin.id}/edit", f"/users/{admin.id}/delete"):
        response = user_client.get(url)
        assert response.status_code == 403
        assert "Forbidden" in response.get_data(as_text=True)
    token = csrf_token(user_client, "/")
    assert user_client.post(f"/users/{admin.id}/delete",
                            data={"csrf_token": token}).status_code == 403
    assert user_client.post("/users/new", data={
        "csrf_token": token, "username": "eve", "email": "eve@example.com",
        "password": PASSWORD}).status_code == 403
    assert stored(admin.id) is not None and user_count() == 2


def test_anonymous_is_sent_to_login(client: FlaskClient, admin: User) -> None:
    for url in ("/", "/users/new", f"/users/{admin.id}/edit", f"/users/{admin.id}/delete"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")


# --- the list: search, filters, sort, pagination ---------------------------------------------

@pytest.fixture
def crowd(make_user, admin: User) -> None:
    make_user("alice", email="x.alice@corp.example.com")
    make_user("albert", role="admin", active=False, email="al@example.com")
    make_user("carl_x", email="carl@example.com")
    make_user("zed", email="zed@ALICE.org")
    make_user("Bea")


@BOTH_DATABASES
@pytest.mark.parametrize(("query", "expected"), [
    ("", ["admin", "albert", "alice", "Bea", "carl_x", "zed"]),
    ("q=ALICE", ["alice", "zed"]),
    ("q=_", ["carl_x"]),
    ("role=admin", ["admin", "albert"]),
    ("active=no", ["albert"]),
    ("role=user&active=yes&q=EXAMPLE", ["alice", "Bea", "carl_x"]),
    ("sort=-username", ["zed", "carl_x", "Bea", "alice", "albert", "admin"]),
    ("sort=email", ["admin", "albert", "Bea", "carl_x", "alice", "zed"]),
    ("sort=-active", ["Bea", "zed", "carl_x", "alice", "admin", "albert"]),
    ("sort=password_hash", ["admin", "albert", "alice", "Bea", "carl_x", "zed"]),
    ("per_page=2&page=2", ["alice", "Bea"]),
    ("per_page=2&page=9", []),
    ("per_page=100&page=2147483647", []),
    # Past the database's OFFSET range: the default page, as for any unusable value.
    ("per_page=2&page=99999999999999999999", ["admin", "albert"]),
    ("per_page=2&page=2147483648", ["admin", "albert"]),
    ("per_page=2&page=x", ["admin", "albert"]),
])
def test_list_search_filter_sort_page(admin_client: FlaskClient, crowd: None, query: str,
                                      expected: list[str]) -> None:
    html = admin_client.get(f"/?{query}").get_data(as_text=True)
    assert usernames(html) == expected
    assert '<span data-counter="total">6</span>' in html  # the whole table, not the page
    assert '<span data-counter="active">5</span>' in html
    # Active admins only (albert is an inactive admin), as the live script counts them.
    assert '<span data-counter="admins">1</span>' in html


def dashboard_view(html: str) -> dict:
    """The live view the dashboard subscribes with (its ``data-view``)."""
    return json.loads(unescape(re.search(r"data-view='([^']*)'", html).group(1)))


def test_list_state_is_on_the_dashboard(admin_client: FlaskClient, crowd: None) -> None:
    html = admin_client.get("/?q=a&role=user&sort=-email&per_page=1&page=2").get_data(
        as_text=True)
    assert dashboard_view(html) == {"q": "a", "role": "user", "sort": "-email", "page": 2,
                                    "per_page": 1}
    assert 'data-total="4"' in html
    assert "4 matching users" in html and 'href="/?q=a&amp;role=user' in html
    # Bad values fall back to the page's defaults; per_page is clamped to the largest choice.
    assert dashboard_view(admin_client.get("/?sort=nope").get_data(as_text=True))["sort"] == \
        "username"
    for raw, used in (("5000", 100), ("0", 20), ("x", 20)):
        html = admin_client.get(f"/?per_page={raw}").get_data(as_text=True)
        assert dashboard_view(html)["per_page"] == used
    empty = admin_client.get("/?q=nobody").get_data(as_text=True)
    assert '<p class="empty" id="empty-state">No users match.</p>' in empty


def test_cursor_follows_the_change_log(admin_client: FlaskClient, bob: User) -> None:
    def page_cursor() -> int:
        html = admin_client.get("/").get_data(as_text=True)
        return int(re.search(r'data-cursor="(\d+)"', html).group(1))

    before = page_cursor()
    update_user(bob, {"email": "bobby@example.com"}, bob.version)
    after = page_cursor()
    assert after > before
    assert after == db.session.scalar(select(func.max(UserChange.cursor)))


def test_html_in_data_is_escaped(admin_client: FlaskClient) -> None:
    # The field rules forbid this name, but other programs may write the table with SQL.
    db.session.execute(text(
        "INSERT INTO users (username, email, role, active, version) "
        "VALUES (:name, 'x@example.com', 'user', :active, 1)"),
        {"name": "<script>alert(1)</script>", "active": True})
    db.session.commit()
    user_id = db.session.scalar(select(User.id).filter_by(email="x@example.com"))
    for url in ("/", f"/users/{user_id}/edit", f"/users/{user_id}/delete",
                "/?q=%22%3E%3Cscript%3Ealert(2)%3C/script%3E"):
        html = admin_client.get(url).get_data(as_text=True)
        assert "<script>alert" not in html, url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin_client.get("/").get_data(as_text=True)


# --- create -------------------------------------------------------------------------------

@BOTH_DATABASES
def test_create_user_through_the_form(admin_client: FlaskClient) -> None:
    response = post_form(admin_client, "/users/new", {
        "username": "carol", "email": "Carol@Example.com", "password": PASSWORD,
        "role": "admin", "active": "y"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "User carol created." in admin_client.get("/").get_data(as_text=True)
    carol = db.session.scalar(select(User).filter_by(username="carol"))
    assert carol.email == "carol@example.com" and carol.role == "admin" and carol.active
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.op, change.actor, change.origin) == ("insert", "admin", "ui")


@BOTH_DATABASES
@pytest.mark.parametrize(("changes", "field", "message", "status"), [
    ({"username": "BOB"}, "username", "This username is already taken.", 409),
    ({"email": "BOB@example.COM"}, "email", "This email is already taken.", 409),
    ({"email": "not-an-email"}, "email", "email address", 400),
    ({"username": "x" * 33}, "username", "3 to 32 letters", 400),
    ({"username": "", "email": ""}, "email", "This field is required.", 400),
    ({"password": "short"}, "password", "At least 8 characters.", 400),
])
def test_create_field_errors_write_nothing(admin_client: FlaskClient, bob: User, changes: dict,
                                           field: str, message: str, status: int) -> None:
    before = user_count()
    data = {"username": "dave", "email": "dave@example.com", "password": PASSWORD,
            "role": "user", **changes}
    response = post_form(admin_client, "/users/new", data)
    html = response.get_data(as_text=True)
    assert response.status_code == status
    errors = re.findall(rf'<p class="error" data-error-for="{field}">([^<]*)</p>', html)
    assert any(message in error for error in errors), errors
    assert user_count() == before


# --- edit ---------------------------------------------------------------------------------

@BOTH_DATABASES
def test_edit_user_through_the_form(app: Flask, admin_client: FlaskClient, bob: User) -> None:
    html = admin_client.get(f"/users/{bob.id}/edit").get_data(as_text=True)
    assert f'id="edit-form" data-user-id="{bob.id}" data-version="1"' in html
    assert '<div id="live-notice" hidden></div>' in html
    assert re.search(r'name="version" type="hidden" value="1"', html)
    response = post_form(admin_client, f"/users/{bob.id}/edit", edit_data(
        bob, email="robert@example.com", role="admin", active=None, password="new-password-1"))
    assert response.status_code == 302
    assert "User bob saved." in admin_client.get("/").get_data(as_text=True)
    now = stored(bob.id)
    assert (now.email, now.role, now.active, now.version) == ("robert@example.com", "admin",
                                                              False, 2)
    assert now.check_password("new-password-1")
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.op, change.actor, change.origin) == ("update", "admin", "ui")


def test_edit_field_errors_change_nothing(admin_client: FlaskClient, admin: User,
                                          bob: User) -> None:
    response = post_form(admin_client, f"/users/{bob.id}/edit",
                         edit_data(bob, email="ADMIN@example.com", password="short"))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'data-error-for="password">At least 8 characters.' in html
    assert stored(bob.id).email == "bob@example.com" and stored(bob.id).version == 1


@BOTH_DATABASES
def test_stale_edit_is_a_conflict(admin_client: FlaskClient, bob: User) -> None:
    form = admin_client.get(f"/users/{bob.id}/edit").get_data(as_text=True)
    assert 'value="1"' in form
    update_user(bob, {"email": "elsewhere@example.com"}, 1)  # someone else, meanwhile

    response = post_form(admin_client, f"/users/{bob.id}/edit",
                         edit_data(bob, version=1, email="mine@example.com"))
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Someone else changed this user" in html and "not saved" in html
    assert "elsewhere@example.com" in html and 'value="mine@example.com"' in html
    assert "Saving again will <strong>overwrite</strong>" in html
    # "Your value" of the version is the one the form was loaded with, not the stored one.
    assert re.search(r'<tr data-field="version">.*?<td>2</td><td>1 \(loaded\)</td>', html)
    assert re.search(r'name="version" type="hidden" value="2"', html)
    assert (stored(bob.id).email, stored(bob.id).version) == ("elsewhere@example.com", 2)

    again = post_form(admin_client, f"/users/{bob.id}/edit",
                      edit_data(stored(bob.id), version=2, email="mine@example.com"))
    assert again.status_code == 302 and stored(bob.id).email == "mine@example.com"


@BOTH_DATABASES
@pytest.mark.parametrize("changes", [{"role": "user"}, {"active": None}])
def test_last_admin_cannot_be_demoted_or_deactivated(admin_client: FlaskClient, admin: User,
                                                     changes: dict) -> None:
    response = post_form(admin_client, f"/users/{admin.id}/edit", edit_data(admin, **changes))
    assert response.status_code == 409
    assert "last active admin" in response.get_data(as_text=True)
    now = stored(admin.id)
    assert (now.role, now.active, now.version) == ("admin", True, 1)


# --- delete ---------------------------------------------------------------------------------

@BOTH_DATABASES
def test_delete_user_after_confirmation(admin_client: FlaskClient, bob: User) -> None:
    page = admin_client.get(f"/users/{bob.id}/delete").get_data(as_text=True)
    assert "Delete bob?" in page and 'method="post"' in page
    response = post_form(admin_client, f"/users/{bob.id}/delete", {})
    assert response.status_code == 302
    assert "User bob deleted." in admin_client.get("/").get_data(as_text=True)
    assert stored(bob.id) is None
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.op, change.actor, change.origin) == ("delete", "admin", "ui")


@BOTH_DATABASES
def test_stale_delete_is_a_conflict_not_an_error(admin_client: FlaskClient, bob: User) -> None:
    page = admin_client.get(f"/users/{bob.id}/delete").get_data(as_text=True)
    assert re.search(r'name="version" type="hidden" value="1"', page)
    update_user(bob, {"email": "renamed@example.com"}, 1)  # someone else, meanwhile

    response = post_form(admin_client, f"/users/{bob.id}/delete", {"version": "1"})
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 409
    assert "Someone else changed this user" in html and "nothing was deleted" in html
    assert "renamed@example.com" in html  # the user as it is now
    assert re.search(r'name="version" type="hidden" value="2"', html)
    assert stored(bob.id) is not None

    again = post_form(admin_client, f"/users/{bob.id}/delete", {"version": "2"})
    assert again.status_code == 302 and stored(bob.id) is None


@BOTH_DATABASES
def test_last_admin_cannot_be_deleted(admin_client: FlaskClient, admin: User) -> None:
    response = post_form(admin_client, f"/users/{admin.id}/delete", {})
    assert response.status_code == 409
    assert "last active admin" in response.get_data(as_text=True)
    assert stored(admin.id) is not None


def test_posts_without_csrf_token_are_refused(admin_client: FlaskClient, bob: User) -> None:
    response = admin_client.post("/users/new", data={
        "username": "mallory", "email": "m@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)
    assert admin_client.post(f"/users/{bob.id}/delete").status_code == 400
    assert admin_client.post(f"/users/{bob.id}/edit", data=edit_data(
        bob, email="x@example.com")).status_code == 400
    assert user_count() == 2 and stored(bob.id).email == "bob@example.com"
