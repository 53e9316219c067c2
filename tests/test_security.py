"""Security defaults a user relies on without seeing them: headers, cookies, no inline code."""

import re

import pytest

from app import create_app
from tests.conftest import login

PAGES = ["/", "/users/new", "/chat", "/playground", "/login"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_forbid_inline_scripts_and_carry_none(app, admin_client, path):
    browser = app.test_client() if path == "/login" else admin_client  # logged out for /login
    response = browser.get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", policy).group(1)
    assert script_src.strip() == "'self'" and "unsafe" not in policy
    html = response.get_data(as_text=True)
    # Every script comes from a file; no inline handlers either.
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert response.headers["X-Frame-Options"] == "DENY"


def test_session_cookie_is_httponly_and_samesite_lax(client, admin):
    response = login(client, "admin")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development serves plain http on 127.0.0.1


def test_an_unknown_flask_config_is_named_with_the_choices(monkeypatch):
    monkeypatch.setenv("FLASK_CONFIG", "prod")
    with pytest.raises(RuntimeError, match="FLASK_CONFIG='prod': use one of development"):
        create_app()


def test_production_cookies_are_secure(db_url):
    app = create_app("PRODUCTION", {"SQLALCHEMY_DATABASE_URI": db_url})
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
