"""Health checks, and a database outage answered 503 (a real PostgreSQL behind a TCP
proxy this test cuts and restores)."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy.engine import make_url

from app import create_app
from app.auth.tokens import issue_token
from app.extensions import db
from app.users.service import create_user
from tests.conftest import BOTH_DATABASES, PASSWORD, login
from tests.servers import Proxy, free_port


@BOTH_DATABASES
def test_healthz_and_readyz_answer_while_all_is_well(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok"}


def test_readyz_names_an_unreachable_message_queue(app, client):
    app.config["SOCKETIO_MESSAGE_QUEUE"] = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert response.get_json()["reason"].startswith("message queue")


@pytest.fixture
def outage_app(db_url):
    """An app on a fresh PostgreSQL database reached through a ``Proxy``."""
    url = make_url(db_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    app = create_app("testing", {
        "SQLALCHEMY_DATABASE_URI": url.set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False),
        "SECRET_KEY": "test-secret"})
    yield app, proxy
    proxy.down()
    with app.app_context():
        db.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_database_outage_is_a_503_logged_once(outage_app, caplog):
    app, proxy = outage_app
    with app.app_context():
        admin = create_user({"username": "admin", "email": "a@example.com",
                             "password": PASSWORD, "role": "admin"})
        headers = {"Authorization": f"Bearer {issue_token(admin)}"}
        db.session.remove()
    client = app.test_client()
    assert client.get("/api/users", headers=headers).status_code == 200
    assert login(client, "admin").status_code == 302

    proxy.down()
    caplog.set_level(logging.INFO, logger="app.health")
    for _ in range(5):
        started = time.monotonic()
        answer = client.get("/api/users", headers=headers)
        assert time.monotonic() - started < 5
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert "unreachable" in answer.get_json()["error"]
    page = client.get("/")  # the logged-in user cannot even be loaded
    assert page.status_code == 503 and "unreachable" in page.get_data(as_text=True)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["reason"].startswith("database")
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_data(as_text=True)[:3000]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("database unreachable" in line for line in lines) == 1, lines

    proxy.up()
    deadline = time.monotonic() + 10
    while not any("reachable again" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the end of the outage was never logged"
        time.sleep(0.2)
    assert client.get("/api/users", headers=headers).status_code == 200
    assert not any(r.exc_info for r in caplog.records), "no traceback per request"
