"""Error pages (404, 403, 500) and their JSON under /api; ids past the database's range."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app.extensions import db
from app.models import User
from tests.conftest import BOTH_DATABASES, csrf_token


def test_error_pages_in_the_site_look(admin_client: FlaskClient, user_client: FlaskClient,
                                      admin: User) -> None:
    missing = admin_client.get("/users/9999/edit")
    assert missing.status_code == 404
    html = missing.get_data(as_text=True)
    assert "Page not found" in html and 'class="topbar"' in html and "css/app.css" in html
    forbidden = user_client.get(f"/users/{admin.id}/edit")
    html = forbidden.get_data(as_text=True)
    assert forbidden.status_code == 403 and "Forbidden" in html and "Log out" in html
    assert admin_client.get("/users/9999/delete").status_code == 404


@BOTH_DATABASES
@pytest.mark.parametrize("user_id", ["2147483648", "99999999999999999999"])
def test_huge_ids_are_404_pages(admin_client: FlaskClient, user_id: str) -> None:
    for url in (f"/users/{user_id}/edit", f"/users/{user_id}/delete"):
        response = admin_client.get(url)
        assert response.status_code == 404
        assert "Page not found" in response.get_data(as_text=True)
    token = csrf_token(admin_client, "/")
    response = admin_client.post(f"/users/{user_id}/delete", data={"csrf_token": token})
    assert response.status_code == 404


def test_api_errors_are_json(client: FlaskClient) -> None:
    missing = client.get("/api/no-such-thing")
    assert missing.status_code == 404 and missing.get_json() == {"error": "Not Found"}
    wrong = client.put("/api/users")
    assert wrong.status_code == 405 and wrong.get_json()["error"]
    assert "GET" in wrong.headers["Allow"]


def test_unhandled_errors_are_a_500_page_or_json(app: Flask, client: FlaskClient) -> None:
    def boom() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/api/boom", "api_boom", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    page = client.get("/boom")
    assert page.status_code == 500
    html = page.get_data(as_text=True)
    assert "Something went wrong" in html and "css/app.css" in html
    assert "RuntimeError" not in html  # no traceback for visitors
    api = client.get("/api/boom")
    assert api.status_code == 500 and api.get_json() == {"error": "Internal Server Error"}


def test_saving_a_user_deleted_meanwhile_answers_404(admin_client: FlaskClient, bob: User):
    """The row vanishes between loading the form and saving it: a 404, not a crash."""
    bob_id, version = bob.id, bob.version
    token = csrf_token(admin_client, f"/users/{bob_id}/edit")
    db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": bob_id})
    db.session.commit()
    response = admin_client.post(f"/users/{bob_id}/edit", data={
        "username": "bob", "email": "bob@example.com", "role": "user", "active": "y",
        "version": version, "csrf_token": token})
    assert response.status_code == 404
