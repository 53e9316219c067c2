"""One rate limit for every client event of every namespace, per connection."""

from __future__ import annotations

import shutil

import pytest

from app import create_app
from app.auth.tokens import issue_token
from app.extensions import db, socketio
from app.realtime.ratelimit import RateLimiter
from app.users.service import create_user
from tests.conftest import PASSWORD

BURST = 5


@pytest.fixture
def strict_app(sqlite_template, tmp_path):
    """An app whose connections may send ``BURST`` events, then one every 10 s."""
    path = tmp_path / "app.sqlite"
    shutil.copy(sqlite_template, path)
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
                                 "SECRET_KEY": "test-secret", "SOCKETIO_EVENT_RATE": 0.1,
                                 "SOCKETIO_EVENT_BURST": BURST})
    with app.app_context():
        user = create_user({"username": "admin", "email": "a@example.com",
                            "password": PASSWORD, "role": "admin"})
        yield app, issue_token(user)
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize(("namespace", "event", "data"), [
    ("/users", "latency", {}),
    ("/demo", "my_ping", None),
    ("/chat", "history", {"room": "lobby"}),
])
def test_every_namespace_answers_a_flood_with_a_rate_limit_error(strict_app, namespace,
                                                                  event, data):
    app, token = strict_app
    client = socketio.test_client(app, namespace=namespace, auth={"token": token})
    other = socketio.test_client(app, namespace=namespace, auth={"token": token})
    args = () if data is None else (data,)
    answers = [client.emit(event, *args, namespace=namespace, callback=True)
               for _ in range(BURST + 3)]
    refused = [a for a in answers if isinstance(a, dict) and "error" in a
               and a["error"].startswith("rate limit")]
    assert len(refused) == 3, answers
    assert client.is_connected(namespace)
    # Without an acknowledgement the refusal is an ``error`` event.
    client.get_received(namespace)
    client.emit(event, *args, namespace=namespace)
    errors = [e for e in client.get_received(namespace) if e["name"] == "error"]
    assert errors and errors[-1]["args"][0]["error"].startswith("rate limit")
    # Another connection has its own allowance.
    answer = other.emit(event, *args, namespace=namespace, callback=True)
    assert not (isinstance(answer, dict) and "rate limit" in answer.get("error", ""))
    client.disconnect(namespace=namespace)
    other.disconnect(namespace=namespace)


def test_idle_buckets_are_dropped_as_the_limiter_goes():
    limiter = RateLimiter(rate=1e9, burst=1)  # refills at once: every bucket is idle
    for n in range(RateLimiter.SWEEP_EVERY * 2):
        assert limiter.allow(f"connection {n}")
    assert len(limiter._buckets) < RateLimiter.SWEEP_EVERY
