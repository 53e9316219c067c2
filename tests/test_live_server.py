"""The live users table end to end: a real gevent server, python-socketio clients,
and writers in other processes (CLI, plain SQL), on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import threading
import time

import pytest
import requests
import socketio
import websocket
from sqlalchemy import create_engine, select, text

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import LiveState, UserChange
from app.users.service import update_user
from tests.conftest import BOTH_DATABASES, PASSWORD
from tests.live_client import InOrderClient, LiveClient

pytestmark = pytest.mark.server


@pytest.fixture
def live(live_server, admin):
    """Open LiveClients on the live server with the admin's token; closed at the end."""
    clients: list[LiveClient] = []

    def open_client(token: str | None = None) -> LiveClient:
        client = LiveClient(live_server.url, token or issue_token(admin)).connect()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def plain_sql(db_url: str, *statements: str) -> None:
    """Run SQL in another process, as any program outside the app would."""
    if db_url.startswith("sqlite"):
        code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30); "
                "[c.execute(s) for s in sys.argv[2:]]; c.commit()")
        target = db_url.removeprefix("sqlite:///")
    else:
        code = ("import psycopg, sys\nwith psycopg.connect(sys.argv[1]) as c:\n"
                "    [c.execute(s) for s in sys.argv[2:]]")
        target = db_url.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run([sys.executable, "-c", code, target, *statements], check=True, timeout=60)


def form_create(base: str, username: str) -> None:
    """Log in and submit the create-user form over HTTP, CSRF token and all."""
    def token(html: str) -> str:
        return html.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]

    with requests.Session() as http:
        page = http.get(f"{base}/login", timeout=10).text
        http.post(f"{base}/login", data={"username": "admin", "password": PASSWORD,
                                         "csrf_token": token(page)}, timeout=10)
        page = http.get(f"{base}/users/new", timeout=10).text
        r = http.post(f"{base}/users/new", timeout=10, data={
            "username": username, "email": f"{username}@example.com", "role": "user",
            "active": "y", "password": "long-enough-pw", "csrf_token": token(page)})
        assert r.status_code == 200 and r.url.rstrip("/") == base, r.text[:500]


def api_create(base: str, username: str) -> None:
    token = requests.post(f"{base}/api/tokens", auth=("admin", PASSWORD), timeout=10).json()
    r = requests.post(f"{base}/api/users", timeout=10,
                      headers={"Authorization": f"Bearer {token['token']}"},
                      json={"username": username, "email": f"{username}@example.com",
                            "password": "long-enough-pw"})
    assert r.status_code == 201, r.text


def logged_cursors() -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(select(UserChange.cursor).order_by(UserChange.cursor)))


@BOTH_DATABASES
def test_changes_from_every_writer_arrive(live, live_server, db_url, make_user):
    client = live()
    ack = client.subscribe(None)
    assert [r["username"] for r in ack["rows"]] == ["admin"]

    result = live_server.flask("users", "create", "cli_user", "--email", "cli@example.com",
                               "--password", "long-enough-pw")
    cli_id = int(result.stdout.strip())
    plain_sql(db_url, "INSERT INTO users (username, email) VALUES ('sql_user', 'sql@example.com')",
              f"UPDATE users SET role = 'admin' WHERE id = {cli_id}")
    alice = make_user("alice")  # this test process: a writer that is not the server
    form_create(live_server.url, "form_user")
    api_create(live_server.url, "api_user")
    changes = client.wait_for(6)
    assert [(c["op"], c["row"]["username"], c["origin"], c["actor"]) for c in changes] == [
        ("insert", "cli_user", "cli", getpass.getuser()),
        ("insert", "sql_user", "sql", None),
        ("update", "cli_user", "sql", None),
        ("insert", "alice", "app", None),
        ("insert", "form_user", "ui", "admin"),
        ("insert", "api_user", "api", "admin"),
    ]
    assert changes[2]["before"] == {"role": "user"} and changes[2]["row"]["version"] == 2
    assert [c["cursor"] for c in changes] == [ack["cursor"] + i for i in range(1, 7)]
    assert alice.id == changes[3]["id"]


@BOTH_DATABASES
def test_four_concurrent_writers_exactly_once_in_order(live, db_url, make_user):
    users = [make_user(f"writer{i}") for i in range(4)]
    clients = [live(), live()]
    start = clients[0].subscribe(None)["cursor"]
    clients[1].subscribe(start)
    engine = create_engine(db_url, connect_args={"timeout": 30} if "sqlite" in db_url else {})

    def write(user_id: int) -> None:
        for n in range(200):
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET email = :e WHERE id = :id"),
                             {"e": f"w{user_id}-{n}@example.com", "id": user_id})

    threads = [threading.Thread(target=write, args=(u.id,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    expected = [c for c in logged_cursors() if c > start]
    assert len(expected) == 800
    for client in clients:
        got = [c["cursor"] for c in client.wait_for(800, timeout=60)]
        assert got == expected  # every change, once, in cursor order
        last = {c["id"]: c["row"]["email"] for c in client.changes}
        assert {last[u.id] for u in users} == {f"w{u.id}-199@example.com" for u in users}


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_postgres_cursors_follow_commit_order(live, db_url, make_user):
    """A transaction left open does not hold up a later writer, whose change commits
    first and gets the earlier cursor: the feed never passes a cursor that a slower
    commit could still take (migration 0009)."""
    first, second = make_user("first").id, make_user("second").id
    client = live()
    start = client.subscribe(None)["cursor"]
    engine = create_engine(db_url, connect_args={"options": "-c lock_timeout=5s"})
    with engine.connect() as slow:
        slow.execute(text("UPDATE users SET email = 'slow@example.com' WHERE id = :id"),
                     {"id": first})
        with engine.begin() as fast:  # LockNotAvailable if it waited for ``slow``
            fast.execute(text("UPDATE users SET email = 'fast@example.com' WHERE id = :id"),
                         {"id": second})
        assert [(c["id"], c["cursor"]) for c in client.wait_for(1)] == [(second, start + 1)]
        slow.commit()
    engine.dispose()
    changes = client.wait_for(2)
    assert [(c["id"], c["cursor"]) for c in changes] == [(second, start + 1), (first, start + 2)]


def test_resume_after_disconnect_misses_nothing(live, live_server, make_user):
    client = live()
    client.subscribe(None)
    make_user("before")
    client.wait_for(1)
    last_seen = client.cursor
    client.close()
    make_user("while_away1")
    make_user("while_away2")
    again = live()
    ack = again.subscribe(last_seen)
    assert [c["row"]["username"] for c in ack["changes"]] == ["while_away1", "while_away2"]
    make_user("after")
    assert [c["row"]["username"] for c in again.wait_for(1)] == ["after"]


def test_old_cursor_after_retention_gets_a_snapshot(server_factory, admin, make_user):
    server = server_factory({"LIVE_RETENTION_SECONDS": "1", "LIVE_PRUNE_INTERVAL": "1"})
    client = LiveClient(server.url, issue_token(admin)).connect()
    try:
        client.subscribe(None)
        make_user("old_news")
        [change] = client.wait_for(1)
        deadline = time.monotonic() + 15
        while pruned() < change["cursor"]:  # the server's schedule prunes it
            assert time.monotonic() < deadline, "the change log was never pruned"
            time.sleep(0.2)
        ack = client.subscribe(change["cursor"] - 1)
        assert "rows" in ack and "old_news" in {r["username"] for r in ack["rows"]}
        assert ack["cursor"] >= change["cursor"]
        assert "changes" in client.subscribe(ack["cursor"])  # a fresh cursor replays again
    finally:
        client.close()


def pruned() -> int:
    db.session.rollback()
    return db.session.scalar(select(LiveState.value).filter_by(key="pruned_through")) or 0


def test_unauthenticated_and_foreign_origin_connections_are_refused(live_server, admin):
    for kwargs in ({"auth": None}, {"auth": {"token": "forged"}}):
        sio = socketio.Client(reconnection=False)
        reasons: list = []
        sio.on("connect_error", reasons.append, namespace="/users")
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio.connect(live_server.url, namespaces=["/users"], transports=["websocket"],
                        wait_timeout=5, **kwargs)
        assert "authentication required" in reasons[0]["message"]  # the client is told why
    sio = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(live_server.url, namespaces=["/users"], auth={"token": issue_token(admin)},
                    headers={"Origin": "http://evil.example"}, wait_timeout=5)


def test_malformed_subscribe_answers_an_error_and_the_server_goes_on(live):
    client = live()
    for bad in ("nope", ["since"], {"since": -5}, {"since": "3"}, {"since": 2.5}):
        ack = client.sio.call("subscribe", bad, namespace="/users", timeout=5)
        assert "error" in ack
    assert "rows" in client.subscribe(None)
    assert "rows" in live().subscribe(None)  # and other clients are served


@BOTH_DATABASES
def test_deactivated_users_socket_is_closed(live, db_url, make_user):
    bob = make_user("bob")
    bob_client = live(issue_token(bob))
    bob_client.subscribe(None)
    plain_sql(db_url, f"UPDATE users SET active = false WHERE id = {bob.id}")
    assert bob_client.disconnected.wait(10)
    with pytest.raises(socketio.exceptions.ConnectionError):
        live(issue_token(bob))


def test_changes_made_through_the_app_record_their_actor(live, admin, make_user):
    from app.live.capture import set_change_context

    client = live()
    client.subscribe(None)
    bob = make_user("bob")
    set_change_context("admin", "ui")
    update_user(bob, {"role": "admin"}, bob.version)
    change = client.wait_for(2)[1]
    assert (change["actor"], change["origin"], change["before"]) == ("admin", "ui",
                                                                    {"role": "user"})


@pytest.mark.parametrize("queue", [False, True], ids=["no-queue", "redis-queue"])
def test_a_change_through_another_server_process_arrives_once(server_factory, admin, queue,
                                                              request):
    env = request.getfixturevalue("queue_env") if queue else {}
    first, second = server_factory(env), server_factory(env)
    client = LiveClient(first.url, issue_token(admin)).connect()
    other = LiveClient(second.url, issue_token(admin)).connect()
    try:
        start = client.subscribe(None)["cursor"]
        other.subscribe(None)
        api_create(second.url, "via_second")
        api_create(first.url, "via_first")
        for c in (client, other):
            got = c.wait_for(2)
            assert [(x["cursor"], x["row"]["username"]) for x in got] == [
                (start + 1, "via_second"), (start + 2, "via_first")]
        time.sleep(0.5)  # a duplicate through the queue would have arrived by now
        assert len(client.changes) == 2 and len(other.changes) == 2
    finally:
        client.close()
        other.close()


def test_flask_run_threading_mode_never_sends_a_change_before_the_ack(server_factory, db_url,
                                                                      admin, make_user):
    """Under `flask run` handlers and the follower are real threads: subscribe again and
    again while another process writes, and check each subscription's event order."""
    server = server_factory(flask_run=True)
    target = make_user("busy").id
    token = issue_token(admin)
    stop = threading.Event()

    engine = create_engine(db_url)

    def writer() -> None:  # a writer outside the server, as fast as it can
        n = 0
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET email = :e WHERE id = :id"),
                             {"e": f"busy{n}@example.com", "id": target})
            n += 1
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    clients = []
    try:
        for _ in range(8):
            events: list[tuple[str, int]] = []
            sio = InOrderClient(reconnection=False)
            clients.append(sio)
            sio.on("change", lambda c, ev=events: ev.append(("change", c["cursor"])),
                   namespace="/users")
            sio.on("changes", lambda cs, ev=events: ev.extend(("change", c["cursor"]) for c in cs),
                   namespace="/users")
            sio.connect(server.url, namespaces=["/users"], auth={"token": token},
                        transports=["websocket"], wait_timeout=10)
            sio.emit("subscribe", {"since": None}, namespace="/users",
                     callback=lambda ack, ev=events: ev.append(("ack", ack["cursor"])))
            time.sleep(0.4)
            snapshot = list(events)
            assert snapshot and snapshot[0][0] == "ack", snapshot[:3]
            cursors = [c for _, c in snapshot]
            assert cursors == list(range(cursors[0], cursors[0] + len(cursors)))
            assert len(cursors) > 1  # the writer really was writing meanwhile
    finally:
        stop.set()
        thread.join()
        engine.dispose()
        closers = [threading.Thread(target=c.eio.disconnect, kwargs={"abort": True})
                   for c in clients]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()


def test_deactivation_closes_the_users_plain_websocket_too(live_server, db_url, make_user):
    bob = make_user("bob")
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{live_server.port}/ws/chat/lobby?token={issue_token(bob)}", timeout=10)
    try:
        # The handshake completes before the bridge's view runs: wait until it serves.
        ws.send(json.dumps({"text": "ready?"}))
        while b"ready?" not in ws.recv_data()[1]:
            pass
        plain_sql(db_url, f"UPDATE users SET active = 0 WHERE id = {bob.id}")
        frames = []
        while True:  # read until the server closes the socket
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            frames.append(data)
        assert int.from_bytes(data[:2], "big") == 1008
        assert any(b"account deactivated" in f for f in frames)
    finally:
        ws.shutdown()
