"""The dashboard's bulk actions: POST /users/bulk with the login session and CSRF header."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import User, UserChange
from tests.conftest import BOTH_DATABASES, csrf_token

pytestmark = BOTH_DATABASES


def post_bulk(client, body, token=None):
    token = token if token is not None else csrf_token(client, "/")
    return client.post("/users/bulk", json=body, headers={"X-CSRFToken": token})


def test_dashboard_offers_bulk_to_admins_only(admin_client, user_client, bob):
    html = admin_client.get("/").get_data(as_text=True)
    assert 'id="bulk-bar"' in html and 'id="select-all"' in html
    assert html.count("data-select") >= 3  # two rows and the template
    assert "js/bulk.js" in html
    other = user_client.get("/").get_data(as_text=True)
    assert 'id="bulk-bar"' not in other and "js/bulk.js" not in other


def test_bulk_with_the_session(admin_client, make_user):
    ids = [make_user(name).id for name in ("alice", "carol")]
    response = post_bulk(admin_client, {"ids": ids, "action": "set_role", "role": "admin"})
    assert response.status_code == 200 and response.get_json() == {"count": 2}
    db.session.expire_all()
    assert {db.session.get(User, i).role for i in ids} == {"admin"}
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert (change.actor, change.origin) == ("admin", "ui")


def test_bulk_errors_with_the_session(admin_client, admin, bob, user_client):
    missing = post_bulk(admin_client, {"ids": [bob.id, 4242], "action": "delete"})
    assert missing.status_code == 404 and missing.get_json()["missing"] == [4242]
    last = post_bulk(admin_client, {"ids": [admin.id, bob.id], "action": "deactivate"})
    assert last.status_code == 409 and "last active admin" in last.get_json()["error"]
    bad = post_bulk(admin_client, {"ids": [], "action": "delete"})
    assert bad.status_code == 400 and "ids" in bad.get_json()["errors"]
    assert post_bulk(admin_client, {"ids": [bob.id], "action": "delete"},
                     token="forged").status_code == 400
    assert post_bulk(user_client, {"ids": [bob.id], "action": "delete"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(User, bob.id) is not None
