"""SQLite's write lock held by another program (a ``sqlite3`` shell in BEGIN IMMEDIATE):
a real gevent server waits for it without freezing, answers 503 past
``SQLITE_LOCK_TIMEOUT``, and loses nothing."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests

from app.auth.tokens import issue_token
from tests.live_client import LiveClient

pytestmark = pytest.mark.server
LOCK_TIMEOUT = 3.0


class WriteLock:
    """A real ``sqlite3`` shell holding the database's write lock until ``release()``."""

    def __init__(self, db_url: str) -> None:
        self.proc = subprocess.Popen(
            ["sqlite3", db_url.removeprefix("sqlite:///")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        self._send("BEGIN IMMEDIATE;\n"
                   "SELECT 'held';\n")
        assert self.proc.stdout.readline().strip() == "held"

    def _send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def release(self) -> None:
        self._send("COMMIT;\n.quit\n")
        self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stdout.close()


def round_trips(http: requests.Session, url: str, until: threading.Event | float) -> list[float]:
    """GET /healthz again and again (a victim that never touches the database), until
    the event is set or for that many seconds; each round trip's duration."""
    times: list[float] = []
    end = time.monotonic() + until if isinstance(until, float) else None
    while (end is None and not until.is_set()) or (end is not None and time.monotonic() < end):
        started = time.monotonic()
        assert http.get(f"{url}/healthz", timeout=30).status_code == 200
        times.append(time.monotonic() - started)
        time.sleep(0.02)
    return times


def in_background(call, *args) -> tuple[threading.Event, dict]:
    """Run ``call`` in a thread; the event is set when it returned (result in the dict)."""
    done, out = threading.Event(), {}

    def run() -> None:
        started = time.monotonic()
        try:
            out["result"] = call(*args)
        finally:
            out["seconds"] = time.monotonic() - started
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, out


def test_a_held_write_lock_neither_freezes_the_server_nor_loses_a_write(
        server_factory, db_url, admin, bob):
    server = server_factory(env={"SQLITE_LOCK_TIMEOUT": str(LOCK_TIMEOUT)})
    headers = {"Authorization": f"Bearer {issue_token(admin)}"}
    api = f"{server.url}/api/users"
    http = requests.Session()
    watcher = LiveClient(server.url, issue_token(admin)).connect()
    try:
        watcher.subscribe(None)
        baseline = max(round_trips(http, server.url, 1.0))

        # A short hold: the PATCH waits for the lock and is applied once it is free;
        # meanwhile other clients (HTTP, a Socket.IO ack, the feed's reads) go on.
        lock = WriteLock(db_url)
        done, out = in_background(lambda: requests.patch(
            f"{api}/{bob.id}", json={"email": "bob2@example.com", "version": bob.version},
            headers=headers, timeout=30))
        threading.Timer(1.5, lock.release).start()
        during = round_trips(http, server.url, done)
        assert max(during) < 10 * baseline + 0.25, (baseline, during)
        patched = out["result"]
        assert patched.status_code == 200, patched.text
        assert patched.json()["email"] == "bob2@example.com"
        assert out["seconds"] >= 1.0  # it really waited for the lock
        changes = watcher.wait_for(1)
        assert [(c["op"], c["id"], c["row"]["email"]) for c in changes] == [
            ("update", bob.id, "bob2@example.com")]

        # A hold longer than SQLITE_LOCK_TIMEOUT: 503 with Retry-After, nothing written.
        lock = WriteLock(db_url)
        try:
            done, out = in_background(lambda: requests.patch(
                f"{api}/{bob.id}", json={"role": "admin", "version": bob.version + 1},
                headers=headers, timeout=30))
            ack_started = time.monotonic()
            ack = watcher.subscribe(None)  # a Socket.IO round trip that reads the database
            ack_seconds = time.monotonic() - ack_started
            during = round_trips(http, server.url, done)
            created = requests.post(api, headers=headers, timeout=30, json={
                "username": "carol", "email": "carol@example.com", "password": "long-enough"})
        finally:
            lock.release()
        refused = out["result"]
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "busy" in refused.json()["error"]
        assert LOCK_TIMEOUT - 0.5 <= out["seconds"] < LOCK_TIMEOUT + 3
        assert created.status_code == 503 and "busy" in created.json()["error"]
        assert max(during) < 10 * baseline + 0.25, (baseline, during)
        assert ack_seconds < 10 * baseline + 0.5 and {r["id"] for r in ack["rows"]} == {
            admin.id, bob.id}

        # After the release: the refused writes left nothing, and everything works.
        listed = requests.get(api, headers=headers, timeout=10).json()
        assert {u["username"]: (u["role"], u["version"]) for u in listed["items"]} == {
            "admin": ("admin", 1), "bob": ("user", bob.version + 1)}
        again = requests.patch(f"{api}/{bob.id}", headers=headers, timeout=10,
                               json={"role": "admin", "version": bob.version + 1})
        assert again.status_code == 200 and again.json()["role"] == "admin"
        changes = watcher.wait_for(2)
        assert [(c["op"], c["id"]) for c in changes[1:]] == [("update", bob.id)]
    finally:
        watcher.close()
        http.close()


def test_a_socket_event_that_outwaits_the_lock_is_answered_unavailable(server_factory,
                                                                       db_url, admin):
    """As the API's 503: a clear answer, not "internal server error"; the connection
    lives on and the same message goes through once the lock is free."""
    import socketio

    server = server_factory(env={"SQLITE_LOCK_TIMEOUT": str(LOCK_TIMEOUT)})
    chat = socketio.Client(reconnection=False)
    chat.connect(server.url, namespaces=["/chat"], transports=["websocket"],
                 auth={"token": issue_token(admin)}, wait_timeout=10)
    try:
        assert chat.call("join", {"room": "lobby"}, namespace="/chat", timeout=10)["ok"]
        lock = WriteLock(db_url)
        try:
            answer = chat.call("message", {"room": "lobby", "text": "hi", "id": "m-1"},
                               namespace="/chat", timeout=LOCK_TIMEOUT + 10)
        finally:
            lock.release()
        assert answer["error"].startswith("unavailable: the database is busy"), answer
        again = chat.call("message", {"room": "lobby", "text": "hi", "id": "m-1"},
                          namespace="/chat", timeout=10)
        assert again["ok"] and not again["duplicate"]
        assert "Traceback" not in server.log.read_text(errors="replace")
    finally:
        chat.disconnect()
