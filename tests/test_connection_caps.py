"""Connection caps (per client address, in total) and the release of a silent client's
socket, on a real gevent server."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.raw_ws import RawWebSocket
from tests.test_chat_server import user_token

pytestmark = pytest.mark.server
EIO_WS = "/socket.io/?EIO=4&transport=websocket"
EIO_POLL = "/socket.io/?EIO=4&transport=polling"


OPENED: list[RawWebSocket] = []


@pytest.fixture(autouse=True)
def close_sockets():
    yield
    while OPENED:
        OPENED.pop().close()


def websocket(port: int, path: str = EIO_WS, headers: str = "") -> RawWebSocket:
    """A WebSocket handshake (closed after the test); an Engine.IO one reads the open."""
    ws = RawWebSocket(port, path, extra_headers=headers)
    OPENED.append(ws)
    if ws.status == 101 and path == EIO_WS:
        assert ws.recv_text().startswith("0{")
    return ws


def refusal(ws: RawWebSocket) -> tuple[int, str]:
    """A refused handshake's status and reason; the connection was never upgraded."""
    assert ws.status != 101
    return ws.status, json.loads(ws.body())["error"]


def test_per_address_cap_refuses_websocket_and_polling_handshakes(app, server_factory):
    server = server_factory({"SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": "3"})
    token = user_token("wendy")
    polling = requests.get(server.url + EIO_POLL, timeout=5)
    assert polling.status_code == 200 and polling.text.startswith("0{")
    sid = json.loads(polling.text[1:])["sid"]
    first = websocket(server.port)
    chat = websocket(server.port, f"/ws/chat/lobby?token={token}")
    assert chat.status == 101
    # Three open: each kind of handshake is refused now, with the reason.
    reason = "too many connections from your address (at most 3)"
    assert refusal(websocket(server.port)) == (429, reason)
    assert refusal(websocket(server.port, f"/ws/chat/lobby?token={token}")) == (429, reason)
    over = requests.get(server.url + EIO_POLL, timeout=5)
    assert (over.status_code, over.json()) == (429, {"error": reason})
    assert over.headers["Retry-After"]
    # Requests of the sessions already open are not handshakes: they go on.
    assert requests.post(f"{server.url}{EIO_POLL}&sid={sid}", data="40",
                         timeout=5).text == "OK"
    # One leaves: its slot is free again (the server sees the close within a moment).
    first.sock.sendall(RawWebSocket.frame(b"", opcode=8))
    first.wait_eof(5)
    deadline = time.monotonic() + 5
    while websocket(server.port).status != 101:
        assert time.monotonic() < deadline, "the slot was never freed"
        time.sleep(0.1)


def test_total_cap_refuses_with_503(server_factory):
    server = server_factory({"SOCKETIO_MAX_CONNECTIONS": "2"})
    opened = [websocket(server.port), websocket(server.port)]
    assert refusal(websocket(server.port)) == (503, "server full: 2 connections open")
    assert requests.get(server.url + EIO_POLL, timeout=5).status_code == 503
    assert requests.get(server.url + "/login", timeout=5).status_code == 200  # pages go on
    assert all(ws.status == 101 for ws in opened)


def forwarded(address: str) -> str:
    return f"X-Forwarded-For: {address}\r\n"


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(server_factory):
    untrusted = server_factory({"SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": "1"})
    kept = [websocket(untrusted.port, headers=forwarded("10.0.0.1"))]
    # Not trusted: the header is ignored, both come from 127.0.0.1.
    assert refusal(websocket(untrusted.port, headers=forwarded("10.0.0.2")))[0] == 429

    proxied = server_factory({"SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": "1",
                              "SOCKETIO_TRUSTED_PROXIES": "127.0.0.1"})
    kept += [websocket(proxied.port, headers=forwarded("10.0.0.1")),
             websocket(proxied.port, headers=forwarded("203.0.113.9, 10.0.0.2"))]
    assert all(ws.status == 101 for ws in kept)
    # The address the proxy appended counts (a client cannot forge its way out).
    assert refusal(websocket(proxied.port, headers=forwarded("10.0.0.9, 10.0.0.1")))[0] == 429


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_client_that_stops_answering_pings_has_its_socket_closed(server_factory):
    """The client completes the handshake, then goes silent: after the ping timeout the
    server closes its socket (it used to send a close frame and keep the fd forever)."""
    server = server_factory({"SOCKETIO_PING_INTERVAL": "1", "SOCKETIO_PING_TIMEOUT": "1"})
    warm = websocket(server.port)  # the first connection opens the database and more
    warm.close()
    time.sleep(0.5)
    before = open_fds(server.proc.pid)
    silent = [websocket(server.port) for _ in range(5)]
    assert open_fds(server.proc.pid) >= before + 5
    margin = 8  # generous: a shared machine
    for ws in silent:
        assert ws.wait_eof(1 + 1 + margin) < 1 + 1 + margin
    deadline = time.monotonic() + margin
    while open_fds(server.proc.pid) > before:
        assert time.monotonic() < deadline, (before, open_fds(server.proc.pid))
        time.sleep(0.1)
