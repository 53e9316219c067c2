"""Live views through Flask-SocketIO's test client, the follower driven by hand: every
page converges to what ``GET /api/users`` answers for the same query."""

from __future__ import annotations

import random
import re
import sqlite3
from typing import Any

import pytest
from sqlalchemy import text

from app.auth.tokens import issue_token
from app.extensions import db
from app.users.listing import Listing
from app.users.service import delete_user, update_user
from tests.conftest import BOTH_DATABASES, login

NS = "/users"


@pytest.fixture
def connect(sockets, admin):
    return lambda user=None, **kwargs: sockets(NS, user or admin, **kwargs)


@pytest.fixture
def api(client, admin):
    """``api(view)``: what GET /api/users answers for a view's query."""
    headers = {"Authorization": f"Bearer {issue_token(admin)}"}

    def answer(view: dict[str, Any]) -> dict[str, Any]:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in view.items()
                 if v is not None}
        body = client.get("/api/users", query_string=query, headers=headers).get_json()
        return {"ids": [u["id"] for u in body["items"]], "total": body["total"],
                "versions": {u["id"]: u["version"] for u in body["items"]}}

    return answer


class ViewClient:
    """A client of one view that keeps its page as the protocol says (id -> user map)."""

    def __init__(self, sio, view: dict[str, Any]) -> None:
        self.sio = sio
        self.ack = sio.emit("subscribe", {"view": view}, namespace=NS, callback=True)
        assert "error" not in self.ack, self.ack
        self.view = self.ack["view"]
        self.cursor = self.ack["cursor"]
        self.ids, self.total = self.ack["ids"], self.ack["total"]
        self.users = {u["id"]: u for u in self.ack["rows"]}
        self.events: list[dict[str, Any]] = []

    def receive(self) -> list[dict[str, Any]]:
        new = [e["args"][0] for e in self.sio.get_received(NS) if e["name"] == "view"]
        for event in new:
            assert event["cursor"] > self.cursor, "cursors of view events only grow"
            self.cursor = event["cursor"]
            self.users.update({u["id"]: u for u in event["rows"]})
            assert set(event["ids"]) <= set(self.users), "rows hold every new user"
            self.ids, self.total = event["ids"], event["total"]
        self.events += new
        return new

    def page(self) -> dict[str, Any]:
        return {"ids": self.ids, "total": self.total,
                "versions": {i: self.users[i]["version"] for i in self.ids}}


def poll(app) -> None:
    app.extensions["live_feed"].poll_once()


def names(n: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


VIEWS = [
    {"sort": "username", "page": 1, "per_page": 5},
    {"sort": "username", "page": 2, "per_page": 5},
    {"sort": "username", "page": 4, "per_page": 5},
    {"sort": "-updated_at", "per_page": 5},
    {"q": "A1", "sort": "email", "per_page": 4},
    {"role": "admin", "active": True, "sort": "-username", "per_page": 3},
    {"active": False, "sort": "role,-id", "per_page": 4},
    {},
]


@BOTH_DATABASES
@pytest.mark.parametrize("view", [
    {"sort": "username", "page": 2, "per_page": 4},
    {"q": "LI", "sort": "-email", "per_page": 5},
    {"active": True, "sort": "role,-username", "page": 2, "per_page": 3},
    {"role": "user", "sort": "-updated_at", "per_page": 4},
])
def test_one_query_is_one_page_on_the_dashboard_the_api_and_a_view(
        app, connect, make_user, api, client, view):
    """The pages (lenient), the API (strict) and the views (``app.users.listing``) agree
    on the ids and their order, case rules and ties included."""
    ids = {}
    for n, name in enumerate(["Alice", "alice2", "bob", "BOB_b", "Charlie", "charles",
                              "dave.li", "Eli-x", "zed", "_under", "Zoe", "ELI"]):
        user = make_user(name, role="admin" if n % 3 == 0 else "user", active=n % 4 != 1,
                         email=f"{name.swapcase()}@Example.com")
        ids[name] = user.id
    ids["admin"] = 1
    from_view = ViewClient(connect(), view).ids
    assert from_view == api(view)["ids"]
    assert login(client, "admin").status_code == 302
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in view.items()}
    html = client.get("/", query_string=query).get_data(as_text=True)
    on_page = re.findall(r'<td data-field="username" data-value="[^"]*">([^<]*)</td>', html)
    assert [ids[name] for name in on_page] == from_view and from_view


@BOTH_DATABASES
def test_ack_is_the_page_the_api_answers(app, connect, make_user, api):
    for name in names(12):
        make_user(name)
    for view in VIEWS:
        client = ViewClient(connect(), view)
        assert client.page() == api(client.view)
        assert set(client.view) == {"q", "role", "active", "sort", "page", "per_page"}
        assert client.ack["counts"] == {"total": 13, "active": 13, "admins": 1}
    assert ViewClient(connect(), {}).view == {"q": "", "role": None, "active": None,
                                              "sort": "id", "page": 1, "per_page": 20}


@BOTH_DATABASES
def test_pages_converge_through_random_writes(app, connect, make_user, api):
    """Inserts that shift pages, deletes on a page, updates that enter and leave a
    filter or move a row between pages: after each, every page is the API's."""
    rng = random.Random(9)
    users = [make_user(name, role=rng.choice(["admin", "user"])) for name in names(20, "a")]
    clients = [ViewClient(connect(), view) for view in VIEWS]
    for step in range(40):
        action = rng.choice(["insert", "delete", "rename", "role", "active", "email"])
        live = [u for u in users if db.session.get(type(u), u.id) is not None]
        target = rng.choice(live)
        if action == "insert":
            users.append(make_user(f"n{step:02d}{rng.choice('AaBbZz')}",
                                   role=rng.choice(["admin", "user"])))
        elif action == "delete" and target.username != "admin":
            delete_user(target)
        elif action == "rename":
            update_user(target, {"username": f"r{rng.randrange(1000):03d}x{step}"},
                        target.version)
        elif action == "role" and target.username != "admin":
            update_user(target, {"role": rng.choice(["admin", "user"])}, target.version)
        elif action == "active" and target.username != "admin":
            update_user(target, {"active": not target.active}, target.version)
        elif action == "email":
            update_user(target, {"email": f"e{step}@A1.example"}, target.version)
        poll(app)
        for client in clients:
            client.receive()
            assert client.page() == api(client.view), (step, action, client.view)


def test_a_change_elsewhere_costs_no_event(app, connect, make_user):
    for name in names(15):
        make_user(name)
    page_one = ViewClient(connect(), {"sort": "username", "per_page": 5})
    page_three = ViewClient(connect(), {"sort": "username", "page": 3, "per_page": 5})
    last = db.session.get(type(make_user("zzz")), page_three.ids[-1])
    poll(app)
    page_one.receive(), page_three.receive()
    page_one.events.clear()
    update_user(last, {"email": "new@example.com"}, last.version)
    poll(app)
    assert page_one.receive() == []  # not its row, and nothing moved
    event = page_three.receive()[-1]
    assert [u["id"] for u in event["rows"]] == [last.id]  # only the row that changed
    assert event["changes"][0]["before"] == {"email": f"{last.username}@example.com"}


def test_a_page_shifted_by_a_change_elsewhere_lists_no_changes(app, connect, make_user):
    """A rename moves the last user to the top of page 1: every page shifts by one row.
    Page 1's event says who changed its new row; page 2's, whose users did not change,
    lists no changes (a user that just moved onto it is not one of them)."""
    for name in names(15):
        make_user(name)
    page_one = ViewClient(connect(), {"sort": "username", "per_page": 5})
    page_two = ViewClient(connect(), {"sort": "username", "page": 2, "per_page": 5})
    last = db.session.get(type(make_user("zzz")), ViewClient(
        connect(), {"sort": "username", "page": 4, "per_page": 5}).ids[-1])
    poll(app)
    page_one.receive(), page_two.receive()
    moved, old_name = last.id, last.username
    update_user(last, {"username": "aaa"}, last.version)
    poll(app)
    first = page_one.receive()[-1]
    assert first["ids"][0] == moved
    assert [(c["id"], c["before"]) for c in first["changes"]] == [
        (moved, {"username": old_name})]
    second = page_two.receive()[-1]
    assert "changes" not in second and len(second["ids"]) == 5


def test_subscribers_of_one_view_share_one_page(app, connect, make_user):
    make_user("bob")
    a = ViewClient(connect(), {"sort": "username"})
    b = ViewClient(connect(), {"sort": "username"})
    c = ViewClient(connect(), {"sort": "-username"})
    assert len(app.extensions["live_feed"].views) == 2
    make_user("carol")
    poll(app)
    assert a.receive() == b.receive() and c.receive()
    assert a.page() == b.page()


def test_plain_sql_writes_and_a_bulk_update_converge(app, connect, make_user, api, db_url):
    for name in names(30):
        make_user(name)
    clients = [ViewClient(connect(), view) for view in VIEWS]
    path = db_url.removeprefix("sqlite:///")
    outside = sqlite3.connect(path, timeout=10)
    outside.execute("INSERT INTO users (username, email) VALUES ('aaa_sql', 'sql@A1.org')")
    outside.commit()
    poll(app)
    for client in clients:
        client.receive()
        assert client.page() == api(client.view)
    app.config["LIVE_VIEW_BULK_CHANGES"] = 10  # 31 rows make this a bulk write
    outside.execute("UPDATE users SET active = NOT active, role = 'admin' "
                    "WHERE username != 'admin'")
    outside.commit()
    outside.close()
    poll(app)
    for client in clients:
        new = client.receive()
        assert len(new) <= 1, "a bulk write is one event per view"
        assert client.page() == api(client.view)


def test_resubscribing_replaces_the_view(app, connect, make_user):
    sio = connect()
    first = ViewClient(sio, {"sort": "username"})
    second = ViewClient(sio, {"q": "zed"})
    assert first.ack["total"] == 1 and second.ack["total"] == 0
    make_user("bob")
    poll(app)
    assert second.receive() == []  # bob is not in the new view, and the old one is gone
    assert len(app.extensions["live_feed"].views) == 1
    plain = sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert "rows" in plain and len(app.extensions["live_feed"].views) == 0


@pytest.mark.parametrize("view", [
    None, [], "x", {"page": 0}, {"page": "2"}, {"page": True}, {"per_page": 0},
    {"q": None}, {"q": 5}, {"role": "root"}, {"role": None}, {"active": "true"},
    {"active": None}, {"sort": "password_hash"}, {"sort": "name"}, {"sort": None},
    {"colour": "red"}, {"page": 2**40},
])
def test_malformed_views_get_an_error_and_change_nothing(app, connect, make_user, view):
    sio = connect()
    good = ViewClient(sio, {"sort": "username"})
    ack = sio.emit("subscribe", {"view": view}, namespace=NS, callback=True)
    assert set(ack) == {"error"} and "view" in ack["error"]
    assert sio.is_connected(NS)
    make_user("bob")
    poll(app)
    assert good.receive()[-1]["total"] == 2  # still following the first view


def test_per_page_above_the_maximum_is_clamped(app, connect):
    assert ViewClient(connect(), {"per_page": 5000}).view["per_page"] == 100


def test_subscribe_is_rate_limited(app, connect):
    sio = connect()
    burst = app.config["LIVE_SUBSCRIBE_BURST"]
    answers = [sio.emit("subscribe", {"view": {}}, namespace=NS, callback=True)
               for _ in range(burst + 5)]
    refused = [a for a in answers if "error" in a]
    assert refused and all(a["error"].startswith("rate limit") for a in refused)
    assert sio.is_connected(NS)
    assert sio.emit("latency", {}, namespace=NS, callback=True) == {"ok": True}


def test_big_tables_need_a_view(app, connect, make_user):
    app.config["LIVE_SNAPSHOT_MAX_ROWS"] = 3
    sio = connect()
    for name in names(3):
        make_user(name)
    refused = sio.emit("subscribe", {"since": None}, namespace=NS, callback=True)
    assert set(refused) == {"error"} and "view" in refused["error"]
    # A replay longer than the limit is refused the same way (the table is too big for
    # the snapshot that would replace it).
    too_old = sio.emit("subscribe", {"since": 0}, namespace=NS, callback=True)
    assert "view" in too_old["error"]
    recent = sio.emit("subscribe", {"since": 2}, namespace=NS, callback=True)
    assert [c["cursor"] for c in recent["changes"]] == [3, 4]
    assert ViewClient(sio, {"per_page": 2}).total == 4


def test_a_refused_subscribe_keeps_what_the_client_followed(app, connect, make_user):
    """A subscribe answered with an error changes nothing: the view, or the plain stream,
    the connection followed goes on."""
    app.config["LIVE_SNAPSHOT_MAX_ROWS"] = 3
    for name in names(3):
        make_user(name)
    viewer, plain = connect(), connect()
    follower = ViewClient(viewer, {"sort": "username", "per_page": 2})
    cursor = plain.emit("subscribe", {"since": 4}, namespace=NS, callback=True)["cursor"]
    for sio in (viewer, plain):
        assert "view" in sio.emit("subscribe", {"since": None}, namespace=NS,
                                  callback=True)["error"]
    aaron = make_user("aaron")
    poll(app)
    assert follower.receive()[-1]["ids"][0] == aaron.id and follower.total == 5
    changes = [e["args"][0] for e in plain.get_received(NS) if e["name"] == "change"]
    assert [(c["cursor"], c["id"]) for c in changes] == [(cursor + 1, aaron.id)]


def test_counts_follow_every_batch(app, connect, make_user):
    sio = connect()
    ViewClient(sio, {})
    bob = make_user("bob")
    update_user(bob, {"role": "admin"}, bob.version)
    poll(app)
    app.extensions["live_feed"].announce_counts()
    counts = [e["args"][0] for e in sio.get_received(NS) if e["name"] == "counts"]
    assert counts[-1]["counts"] == {"total": 2, "active": 2, "admins": 2}
    assert counts[-1]["changes"] == 2
    assert [c["op"] for c in counts[-1]["recent"]] == ["insert", "update"]


def test_a_row_renamed_from_the_last_page_moves_to_the_first(app, connect, make_user):
    for name in names(5):
        make_user(name)
    first = ViewClient(connect(), {"sort": "username", "per_page": 3})
    last = ViewClient(connect(), {"sort": "username", "page": 2, "per_page": 3})
    db.session.execute(text("UPDATE users SET username = 'a0' WHERE username = 'u004'"))
    db.session.commit()
    poll(app)
    first.receive(), last.receive()
    assert [first.users[i]["username"] for i in first.ids] == ["a0", "admin", "u000"]
    assert [last.users[i]["username"] for i in last.ids] == ["u001", "u002", "u003"]


def test_a_bulk_deactivation_still_closes_the_connected_users_sockets(app, connect, make_user,
                                                                      db_url):
    """A bulk write nobody follows plainly is not loaded change by change, but for the
    users connected here."""
    bob = make_user("bob")
    for name in names(20):
        make_user(name)
    bob_socket = connect(bob)
    ViewClient(connect(), {"active": True})
    app.config["LIVE_VIEW_BULK_CHANGES"] = 5
    outside = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=10)
    outside.execute("UPDATE users SET active = 0 WHERE username != 'admin'")
    outside.commit()
    outside.close()
    poll(app)
    assert not bob_socket.is_connected(NS)


@BOTH_DATABASES
def test_a_page_read_takes_only_rows_of_an_unknown_version_from_the_database(app, make_user):
    """A live page is re-read as ids and versions; only changed users are read whole."""
    for name in names(6):
        make_user(name)
    listing = Listing(sort="username", per_page=4)
    known = {u["id"]: u for u in listing.payloads()}
    changed, same = list(known.values())[:2]
    # Plain SQL: the version is bumped by the database, as for any writer.
    db.session.execute(text("UPDATE users SET email = 'changed@example.com' WHERE id = :id"),
                       {"id": changed["id"]})
    db.session.commit()
    known[same["id"]] = kept = dict(same)
    read = listing.payloads(known=known)
    assert read == listing.payloads()  # what a full read answers
    assert read[0]["email"] == "changed@example.com"
    assert read[0]["version"] == changed["version"] + 1
    assert read[1] is kept  # its version was known: not read again
