"""User ids are never reused (migration 0005), on SQLite and PostgreSQL: a stale PATCH or
edit form meant for a deleted user finds nobody instead of landing on a later one."""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text

from app.extensions import db
from app.models import User
from tests.api_helpers import bearer
from tests.conftest import BOTH_DATABASES, PASSWORD, csrf_token


def plain_insert(db_url: str, username: str, user_id: int | None = None) -> int:
    """Insert a user with plain SQL on a connection of its own (no app settings)."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            columns, values = ("id, ", ":id, ") if user_id is not None else ("", "")
            return conn.execute(text(
                f"INSERT INTO users ({columns}username, email) "
                f"VALUES ({values}:name, :email) RETURNING id"),
                {"id": user_id, "name": username, "email": f"{username}@example.com"},
            ).scalar_one()
    finally:
        engine.dispose()


def plain_delete(db_url: str, user_id: int) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
    finally:
        engine.dispose()


@BOTH_DATABASES
def test_create_delete_create_gives_a_new_id_and_a_stale_patch_finds_nobody(
        client, admin, db_url):
    headers = bearer(admin)
    carol = client.post("/api/users", headers=headers, json={
        "username": "carol", "email": "carol@example.com", "password": PASSWORD}).get_json()
    assert client.delete(f"/api/users/{carol['id']}", headers=headers).status_code == 204
    dave = client.post("/api/users", headers=headers, json={
        "username": "dave", "email": "dave@example.com", "password": PASSWORD}).get_json()
    assert dave["id"] > carol["id"]

    # A client still holding carol's id and version: its PATCH is applied to nobody.
    stale = client.patch(f"/api/users/{carol['id']}", headers=headers,
                         json={"role": "admin", "version": carol["version"]})
    assert stale.status_code == 404
    assert client.get(f"/api/users/{dave['id']}", headers=headers).get_json()["role"] == "user"

    # Plain SQL from another program gets a new id too, even after the newest is deleted.
    plain_delete(db_url, dave["id"])
    eve = plain_insert(db_url, "eve")
    assert eve > dave["id"]

    # An explicit id above everything handed out so far (plain SQL, or a revert) is
    # not handed out again after its user is deleted.
    high = plain_insert(db_url, "frank", user_id=eve + 100)
    plain_delete(db_url, high)
    assert plain_insert(db_url, "grace") > high
    db.session.rollback()
    assert {u.username for u in db.session.scalars(db.select(User))} == {"admin", "eve", "grace"}


@BOTH_DATABASES
def test_a_stale_edit_form_of_a_deleted_user_finds_nobody(admin_client, make_user):
    carol = make_user("carol")
    form_url = f"/users/{carol.id}/edit"
    page = admin_client.get(form_url).get_data(as_text=True)
    version = re.search(r'name="version"[^>]*value="(\d+)"', page).group(1)
    token = csrf_token(admin_client, form_url)
    db.session.delete(carol)
    db.session.commit()
    newcomer = make_user("newcomer")
    assert newcomer.id != carol.id

    saved = admin_client.post(form_url, data={
        "username": "carol", "email": "carol@example.com", "role": "admin", "active": "y",
        "version": version, "csrf_token": token})
    assert saved.status_code == 404
    db.session.expire_all()
    assert db.session.get(User, newcomer.id).role == "user"
