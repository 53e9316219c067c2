"""SIGTERM, as the contract says: the port refuses new connections within 1 s, every
client is told to go within 5 s (an Engine.IO close, which clients answer by
reconnecting; a close frame on the plain WebSocket), the process exits 0 within 10 s.
Under ``python manage.py run`` and under gunicorn (deploy/entrypoint.sh)."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from app.auth.tokens import issue_token
from tests.live_client import LiveClient
from tests.raw_ws import RawWebSocket
from tests.servers import EntrypointProcess, ServerProcess
from tests.test_chat_server import Peer, user_token

pytestmark = pytest.mark.server


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def shutdown_case(server: ServerProcess, admin) -> int | None:
    """Clients of every kind, then SIGTERM; the contract's three deadlines. Returns the
    cursor a /users client had when it was told to go."""
    token = issue_token(admin)
    # The chat clients' users are made first: the /users clients' cursors then follow them.
    chat = Peer(server.url, "carol")
    chat.call("join", {"room": "lobby"})
    plain = RawWebSocket(server.port, f"/ws/chat/lobby?token={user_token('wendy')}")
    users = [LiveClient(server.url, token).connect() for _ in range(2)]
    polling = LiveClient(server.url, token)
    polling.sio.connect(server.url, namespaces=["/users"], auth={"token": token},
                        transports=["polling"], wait_timeout=10)
    for client in [*users, polling]:
        assert "cursor" in client.subscribe(None)
    # What a browser's socket.io client sees, on a raw Engine.IO WebSocket.
    raw = RawWebSocket(server.port, "/socket.io/?EIO=4&transport=websocket")
    assert raw.recv_text().startswith("0{")
    raw.send_text("40/users," + json.dumps({"token": token}))
    assert raw.recv_text().startswith("40/users,{")
    try:
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        while not refused(server.port):
            assert time.monotonic() - sent < 1.0, "still accepting 1 s after SIGTERM"
            time.sleep(0.02)

        # Told within 5 s: an Engine.IO close ("1", not a Socket.IO disconnect, which
        # browsers take as final), then a 1001 close frame.
        assert raw.recv_text() == "1"
        assert raw.wait_close(5)[0] == 1001
        assert plain.wait_close(5) == (1001, "server shutting down")
        for client in [*users, polling]:
            assert client.disconnected.wait(5 - (time.monotonic() - sent))
        chat_gone = time.monotonic() + 5
        while chat.client.connected:
            assert time.monotonic() < chat_gone
            time.sleep(0.02)
        assert time.monotonic() - sent < 5.0

        assert server.proc.wait(10 - (time.monotonic() - sent)) == 0
        return users[0].cursor
    finally:
        for ws in (raw, plain):
            ws.close()
        for client in [*users, polling]:
            client.close()
        chat.client.disconnect()


def test_sigterm_under_manage_py_run(app, live_server, admin):
    cursor = shutdown_case(live_server, admin)
    # The client reconnects to a process started meanwhile and resumes from its cursor.
    live_server.start()
    live_server.flask("users", "create", "late", "--email", "late@example.com",
                      "--password", "a-long-enough-password")
    client = LiveClient(live_server.url, issue_token(admin)).connect()
    try:
        ack = client.subscribe(cursor)
        assert [c["row"]["username"] for c in ack["changes"]] == ["late"]
    finally:
        client.close()


def test_sigterm_under_gunicorn(app, db_url, tmp_path, admin):
    server = EntrypointProcess(db_url, tmp_path / "instance").start()
    try:
        shutdown_case(server, admin)
    finally:
        server.stop()
