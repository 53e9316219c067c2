"""Live views end to end: a real gevent server, python-socketio clients following views,
writers in other processes (CLI, plain SQL, the API), on SQLite and PostgreSQL. Every
page converges to what ``GET /api/users`` answers for the same query."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests
import socketio

from app.auth.tokens import issue_token
from tests.conftest import BOTH_DATABASES
from tests.live_client import InOrderClient
from tests.test_live_server import api_create, plain_sql

pytestmark = pytest.mark.server
NS = "/users"


class ViewClient:
    """Follows one view over a real connection, keeping its page as the contract says."""

    def __init__(self, url: str, token: str, view: dict[str, Any]) -> None:
        self.url, self.token = url, token
        self.users: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.bytes = 0
        self.lock = threading.Lock()
        self.sio = InOrderClient(reconnection=False)  # events applied as they came
        self.sio.on("view", self._on_view, namespace=NS)
        self.sio.connect(url, namespaces=[NS], auth={"token": token},
                         transports=["websocket"], wait_timeout=10)
        ack = self.sio.call("subscribe", {"view": view}, namespace=NS, timeout=20)
        assert "error" not in ack, ack
        self.view, self.cursor = ack["view"], ack["cursor"]
        self.ids, self.total = ack["ids"], ack["total"]
        self.users.update({u["id"]: u for u in ack["rows"]})

    def _on_view(self, event: dict[str, Any]) -> None:
        with self.lock:
            assert event["cursor"] > self.cursor
            self.bytes += len(json.dumps(event))
            self.events.append(event)
            self.cursor = event["cursor"]
            self.users.update({u["id"]: u for u in event["rows"]})
            self.ids, self.total = event["ids"], event["total"]

    def page(self) -> dict[str, Any]:
        with self.lock:
            return {"ids": list(self.ids), "total": self.total,
                    "versions": [self.users[i]["version"] for i in self.ids]}

    def api(self) -> dict[str, Any]:
        query = {k: str(v).lower() if isinstance(v, bool) else v
                 for k, v in self.view.items() if v is not None}
        body = requests.get(f"{self.url}/api/users", params=query, timeout=10,
                            headers={"Authorization": f"Bearer {self.token}"}).json()
        return {"ids": [u["id"] for u in body["items"]], "total": body["total"],
                "versions": [u["version"] for u in body["items"]]}

    def converge(self, timeout: float = 10) -> None:
        """Wait until the page is the API's answer (and stays so for a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            expected = self.api()
            if self.page() == expected:
                return
            if time.monotonic() > deadline:
                assert self.page() == expected, self.view
            time.sleep(0.1)

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def follow(live_server, admin):
    token = issue_token(admin)
    opened: list[ViewClient] = []

    def open_view(view: dict[str, Any]) -> ViewClient:
        opened.append(ViewClient(live_server.url, token, view))
        return opened[-1]

    yield open_view
    for client in opened:
        client.close()


VIEWS = [
    {"sort": "username", "per_page": 5},
    {"sort": "username", "page": 2, "per_page": 5},
    {"q": "Ex", "sort": "-updated_at", "per_page": 4},
    {"role": "user", "active": True, "sort": "email", "page": 2, "per_page": 3},
]


def seed_sql(db_url: str, count: int, prefix: str) -> None:
    """``count`` users inserted by one plain-SQL statement."""
    if db_url.startswith("sqlite"):
        rows = (f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                f"WHERE i < {count}) SELECT '{prefix}' || i, '{prefix}' || i || '@ex.org' FROM n")
    else:
        rows = (f"SELECT '{prefix}' || i, '{prefix}' || i || '@ex.org' "
                f"FROM generate_series(1, {count}) AS i")
    plain_sql(db_url, f"INSERT INTO users (username, email) {rows}")


@BOTH_DATABASES
def test_views_converge_with_every_writer(follow, live_server, db_url, make_user):
    for i in range(12):
        make_user(f"m{i:02d}", email=f"m{i:02d}@{'ex' if i % 2 else 'corp'}.org")
    clients = [follow(view) for view in VIEWS]
    for client in clients:
        assert client.page() == client.api()

    def converge_all() -> None:
        for client in clients:
            client.converge()

    # An insert that shifts every page, through another process's CLI.
    live_server.flask("users", "create", "aaron", "--email", "aaron@ex.org",
                      "--password", "long-enough-pw")
    converge_all()
    # Deletes on page 1 and an update that moves a row from page 2 to the top, in plain SQL.
    plain_sql(db_url, "DELETE FROM users WHERE username IN ('m00', 'm01')",
              "UPDATE users SET username = 'aa_moved' WHERE username = 'm08'")
    converge_all()
    # Updates that enter and leave the filters.
    plain_sql(db_url, "UPDATE users SET email = 'm02@ex.org' WHERE username = 'm02'",
              "UPDATE users SET active = false WHERE username = 'm05'",
              "UPDATE users SET role = 'admin' WHERE username = 'm07'")
    converge_all()
    api_create(live_server.url, "zz_api")
    converge_all()


@BOTH_DATABASES
def test_a_bulk_update_converges_in_a_few_small_events(follow, db_url, admin):
    seed_sql(db_url, 20_000, "bulk")
    clients = [follow(view) for view in VIEWS]
    plain_sql(db_url, "UPDATE users SET email = 'x' || email, active = NOT active "
                      "WHERE username LIKE 'bulk%'")
    for client in clients:
        client.converge(timeout=30)
        assert len(client.events) <= 5, len(client.events)
        assert client.bytes < 20_000 * len(client.events) + 1


@BOTH_DATABASES
def test_malformed_views_get_an_error_and_the_view_followed_goes_on(follow, live_server):
    client = follow({"sort": "username", "per_page": 5})
    errors: list[dict[str, Any]] = []
    client.sio.on("error", errors.append, namespace=NS)
    for bad in (None, [], "x", {"page": 0}, {"q": None}, {"per_page": "5"}, {"role": "root"},
                {"sort": "password_hash"}, {"colour": "red"}):
        ack = client.sio.call("subscribe", {"view": bad}, namespace=NS, timeout=10)
        assert set(ack) == {"error"} and "view" in ack["error"], bad
    client.sio.emit("subscribe", {"view": {"active": "yes"}}, namespace=NS)  # no ack asked
    api_create(live_server.url, "aaron")  # first in the view followed
    client.converge()
    assert client.ids[0] == client.api()["ids"][0] and client.users[client.ids[0]][
        "username"] == "aaron"
    assert len(errors) == 1 and "view" in errors[0]["error"]


def test_a_since_null_subscribe_on_a_big_table_is_told_to_use_a_view(live_server, db_url,
                                                                      admin):
    seed_sql(db_url, 10_001, "big")
    sio = socketio.Client(reconnection=False)
    sio.connect(live_server.url, namespaces=[NS], auth={"token": issue_token(admin)},
                transports=["websocket"], wait_timeout=10)
    try:
        ack = sio.call("subscribe", {"since": None}, namespace=NS, timeout=10)
        assert "view" in ack["error"]
        assert sio.call("latency", {}, namespace=NS, timeout=10) == {"ok": True}
        page = sio.call("subscribe", {"view": {"q": "BIG1000"}}, namespace=NS, timeout=10)
        assert page["total"] == 3  # big1000, big10000 and big10001
        assert [row["username"] for row in page["rows"]] == ["big1000", "big10000", "big10001"]
    finally:
        sio.disconnect()
