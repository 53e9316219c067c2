"""The dashboard's CSV export link and the import page (Flask's test client, CSRF on)."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from app.extensions import db
from app.models import User, UserChange
from tests.conftest import BOTH_DATABASES, csrf_token

pytestmark = BOTH_DATABASES


def upload(client, text: str):
    token = csrf_token(client, "/users/import")
    return client.post("/users/import", data={
        "csrf_token": token, "file": (io.BytesIO(text.encode()), "users.csv")},
        content_type="multipart/form-data")


def test_export_link_of_the_current_view(user_client, make_user):
    make_user("alice", role="admin")
    make_user("zed", role="admin")
    make_user("carol")
    html = user_client.get("/?role=admin&sort=-username").get_data(as_text=True)
    assert 'id="export-csv"' in html and "/users/export.csv?" in html
    assert 'id="import-csv"' not in html  # not for a non-admin
    response = user_client.get("/users/export.csv?role=admin&sort=-username&page=2")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed and "Content-Length" not in response.headers
    header, *rows = csv.reader(io.StringIO(response.get_data(as_text=True)))
    assert header[:2] == ["id", "username"]
    assert [r[1] for r in rows] == ["zed", "alice"]
    make_user("-A1", email="=cmd|'/c'!a0@example.com")  # a download for spreadsheets
    rows = list(csv.reader(io.StringIO(user_client.get("/users/export.csv?q=a1")
                                       .get_data(as_text=True))))
    assert rows[1][1:3] == ["'-A1", "'=cmd|'/c'!a0@example.com"]


def test_import_page_shows_every_bad_line_and_writes_nothing(admin_client, bob):
    assert "Import users from CSV" in admin_client.get("/users/import").get_data(as_text=True)
    response = upload(admin_client, "username,email\ncarol,carol@example.com\n"
                                    "x,nope\nbob,bob2@example.com\nBOB,bob3@example.com\n")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'data-line="3"' in html and 'data-line="5"' in html
    assert 'data-line="2"' not in html and 'data-line="4"' not in html
    assert db.session.scalar(select(User).filter_by(username="carol")) is None


def test_import_page_writes_and_flashes(admin_client, bob):
    response = upload(admin_client, "username,email,role\ncarol,carol@example.com,admin\n"
                                    "bob,bob2@example.com,\n")
    assert response.status_code == 302
    assert "Imported: 1 created, 1 updated." in admin_client.get("/").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, bob.id).email == "bob2@example.com"
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.actor, change.origin) == ("admin", "ui")


def test_import_page_needs_an_admin_and_csrf(user_client, admin_client):
    assert user_client.get("/users/import").status_code == 403
    response = admin_client.post("/users/import", data={
        "file": (io.BytesIO(b"username,email\n"), "u.csv")}, content_type="multipart/form-data")
    assert response.status_code == 400
