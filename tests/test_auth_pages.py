"""The login page and the logout control, through the real forms (CSRF on)."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.models import User
from tests.conftest import PASSWORD, csrf_token, login


def logged_in(client: FlaskClient) -> bool:
    """Whether the list page opens (it sends anonymous visitors to the login page)."""
    return client.get("/").status_code == 200


def test_login_page_in_the_site_look(client: FlaskClient) -> None:
    response = client.get("/login")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="username"' in html and 'type="password"' in html and 'name="password"' in html
    assert 'name="csrf_token" type="hidden"' in html
    assert 'class="topbar"' in html and "css/app.css" in html and "Log out" not in html
    assert "<script" not in html


def test_login_shows_log_out(client: FlaskClient, admin: User) -> None:
    response = login(client, "admin")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    assert "Welcome, admin." in html
    assert 'action="/logout"' in html and ">Log out</button>" in html


def test_the_username_may_be_typed_in_any_case(client: FlaskClient, admin: User) -> None:
    """Usernames are unique in any case, so "Admin" can only mean admin."""
    assert login(client, "Admin").status_code == 302
    assert "Welcome, admin." in client.get("/").get_data(as_text=True)


def test_wrong_password_is_refused(client: FlaskClient, admin: User) -> None:
    response = login(client, "admin", "not-the-password")
    assert response.status_code == 400
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert not logged_in(client)


def test_unknown_user_is_refused(client: FlaskClient) -> None:
    response = login(client, "ghost")
    assert response.status_code == 400
    assert "Invalid username or password." in response.get_data(as_text=True)


def test_inactive_user_cannot_log_in(client: FlaskClient, make_user, admin: User) -> None:
    make_user("sleepy", active=False)
    response = login(client, "sleepy")
    assert response.status_code == 400
    assert "This account is deactivated." in response.get_data(as_text=True)
    assert not logged_in(client)


def test_login_without_csrf_token_is_refused(client: FlaskClient, admin: User) -> None:
    response = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)
    assert not logged_in(client)


def test_logout_is_a_post_with_csrf(client: FlaskClient, admin: User) -> None:
    login(client, "admin")
    wrong_method = client.get("/logout")
    assert wrong_method.status_code == 405
    assert "Method not allowed" in wrong_method.get_data(as_text=True)
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert logged_in(client)

    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "You are logged out." in client.get("/login").get_data(as_text=True)
    for url in ("/", "/users/new", f"/users/{admin.id}/edit"):
        after = client.get(url)
        assert after.status_code == 302 and after.headers["Location"].startswith("/login")
