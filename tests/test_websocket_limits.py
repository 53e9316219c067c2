"""Oversized WebSocket frames on a real gevent server: refused from the frame header
(close 1009), only that connection, while another client's acknowledgements keep their
pace; frames within the limit are unmasked right at every length boundary."""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time

import pytest
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler as BaseHandler
from geventwebsocket.websocket import Header

from app.auth.tokens import issue_token
from app.websocket import WebSocketHandler, unmask
from tests.live_client import LiveClient
from tests.raw_ws import RawWebSocket
from tests.test_chat_server import user_token

pytestmark = pytest.mark.server
LIMIT = 64 * 1024  # SOCKETIO_MAX_HTTP_BUFFER_SIZE's default
BIG = 20_000_000
EIO_WS = "/socket.io/?EIO=4&transport=websocket"


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def round_trips(client: LiveClient, seconds: float = 0.0, count: int = 0) -> list[float]:
    """Time ``latency`` acknowledgements on /users: ``count`` of them, or for ``seconds``."""
    times: list[float] = []
    stop = time.monotonic() + seconds
    while len(times) < count or time.monotonic() < stop:
        start = time.monotonic()
        assert client.sio.call("latency", {}, namespace="/users", timeout=30) == {"ok": True}
        times.append(time.monotonic() - start)
        time.sleep(0.01)
    return times


@pytest.fixture
def victim(live_server, admin):
    client = LiveClient(live_server.url, issue_token(admin)).connect()
    yield client
    client.close()


def big_frame_case(server, victim: LiveClient, path: str, streamed: bool,
                   opening=None) -> None:
    """Announce a 20 MB frame on ``path`` (send 1 KB of it, or all of it): it is closed
    with 1009 within 1 s, the victim's round trips meanwhile stay near their baseline,
    the server's memory does not grow by the frame, and the victim lives on."""
    baseline = round_trips(victim, count=20)
    ws = RawWebSocket(server.port, path)
    assert ws.status == 101
    if opening:
        opening(ws)
    memory = rss(server.proc.pid)
    errors: list[OSError] = []

    def send() -> None:
        try:
            ws.sock.sendall(ws.header(BIG) + (b"a" * BIG if streamed else b"a" * 1024))
        except OSError as exc:  # the server closed on us: expected when streaming
            errors.append(exc)

    closed: dict[str, object] = {}

    def wait_close() -> None:
        closed["frame"] = ws.wait_close(10)
        closed["after"] = time.monotonic() - started

    started = time.monotonic()
    threads = [threading.Thread(target=send), threading.Thread(target=wait_close)]
    for thread in threads:
        thread.start()
    during = round_trips(victim, seconds=1.0)
    for thread in threads:
        thread.join(30)
    assert closed["frame"] == (1009, "message too big")
    assert closed["after"] < 1.0
    # Generous: the old code froze every client for 4 s on a 20 MB frame.
    assert max(during) < 5 * max(baseline) + 0.3, (baseline, during)
    assert statistics.median(during) < 5 * statistics.median(baseline) + 0.05
    assert rss(server.proc.pid) - memory < BIG // 4
    ws.close()
    assert round_trips(victim, count=3)  # still connected, still answered


def socketio_open(ws: RawWebSocket) -> None:
    assert ws.recv_text().startswith("0{")


@pytest.mark.parametrize("streamed", [False, True], ids=["header-only", "streamed"])
def test_a_20mb_socketio_frame_closes_only_its_connection(live_server, victim, streamed):
    big_frame_case(live_server, victim, EIO_WS, streamed, socketio_open)


@pytest.mark.parametrize("streamed", [False, True], ids=["header-only", "streamed"])
def test_a_20mb_plain_websocket_frame_closes_only_its_connection(app, live_server, victim,
                                                                  streamed):
    token = user_token("wendy")

    def chat_works(ws: RawWebSocket) -> None:
        ws.send_text(json.dumps({"text": "before the big one"}))
        assert json.loads(ws.recv_text())["text"] == "before the big one"

    big_frame_case(live_server, victim, f"/ws/chat/lobby?token={token}", streamed, chat_works)


def users_socket(port: int, token: str) -> RawWebSocket:
    """A raw Socket.IO connection to /users, connected with the token."""
    ws = RawWebSocket(port, EIO_WS)
    socketio_open(ws)
    ws.send_text("40/users," + json.dumps({"token": token}))
    assert ws.recv_text().startswith("40/users,{")
    return ws


def latency_packet(ack: int, size: int) -> bytes:
    """An Engine.IO message of exactly ``size`` bytes: a ``latency`` event with an ack."""
    head = f'42/users,{ack}["latency",{{"pad":"'
    tail = '"}]'
    return (head + "x" * (size - len(head) - len(tail)) + tail).encode()


def test_frames_up_to_the_limit_are_unmasked_right(live_server, admin):
    """Lengths around the 7/16/64-bit length encodings, not multiples of 4, up to the
    limit itself: each is an event the server parses and acknowledges."""
    ws = users_socket(live_server.port, issue_token(admin))
    for ack, size in enumerate([64, 125, 126, 127, 1021, 65535, LIMIT]):
        ws.sock.sendall(RawWebSocket.frame(latency_packet(ack, size)))
        assert ws.recv_text() == f'43/users,{ack}[{{"ok":true}}]', size
    # Fragments: a message in three frames, then one whose total passes the limit.
    packet = latency_packet(99, 40_001)
    ws.sock.sendall(RawWebSocket.frame(packet[:7], opcode=1, fin=False)
                    + RawWebSocket.frame(packet[7:30_000], opcode=0, fin=False)
                    + RawWebSocket.frame(packet[30_000:], opcode=0, fin=True))
    assert ws.recv_text() == '43/users,99[{"ok":true}]'
    ws.sock.sendall(RawWebSocket.frame(b"4" * 40_000, opcode=1, fin=False)
                    + RawWebSocket.header(40_000, opcode=0))
    assert ws.wait_close(5) == (1009, "message too big")
    ws.close()


def test_one_byte_over_the_limit_is_refused(live_server, admin):
    ws = users_socket(live_server.port, issue_token(admin))
    ws.sock.sendall(RawWebSocket.frame(latency_packet(1, LIMIT + 1)))
    assert ws.wait_close(5) == (1009, "message too big")
    ws.close()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 65537])
def test_unmask_matches_the_byte_by_byte_reference(size):
    payload, mask = os.urandom(size), os.urandom(4)
    header = Header(length=size)
    header.mask = mask
    assert unmask(payload, mask) == bytes(header.unmask_payload(payload))
    assert unmask(unmask(payload, mask), mask) == payload


def test_responses_are_sent_without_waiting_for_a_delayed_ack(app, monkeypatch):
    """pywsgi sends a response's headers and its body in two writes. With Nagle's
    algorithm on, the second waited for the client's delayed ACK of the first: 40 ms on
    every request of a keep-alive connection (API scripts, the dashboard's polling). The
    handler turns it off for each connection ``manage.py run`` accepts, before serving."""
    served_with: list[int] = []
    monkeypatch.setattr(BaseHandler, "handle", lambda handler: served_with.append(
        handler.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler)
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()):
        accepted, address = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            WebSocketHandler(accepted, address, server).handle()
    assert served_with == [1]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_polling_post_over_the_limit_is_answered_at_once_and_holds_nothing(live_server):
    """Even with no long-polling GET pending (which Engine.IO's close waited for, holding
    the request, its socket and greenlet for good): 413 from the headers, the session
    closed, the descriptors released."""
    base = "/socket.io/?EIO=4&transport=polling"
    before = open_fds(live_server.proc.pid)
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as http:
            http.sendall(f"GET {base} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            sid = json.loads(http.makefile("rb").read().split(b"\r\n\r\n", 1)[1][1:])["sid"]
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as http:
            http.sendall(f"POST {base}&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: {LIMIT + 1}\r\n\r\n".encode())  # no body follows
            answer = http.recv(200)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as http:
            http.sendall(f"POST {base}&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 1"
                         "\r\nConnection: close\r\n\r\n6".encode())  # a NOOP, too late
            late = http.makefile("rb").read()
        assert late.startswith(b"HTTP/1.1 400"), late  # not Engine.IO's 500 and traceback
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as http:
            http.sendall(f"GET {base}&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close"
                         "\r\n\r\n".encode())
            after = http.makefile("rb").read()
        assert after.startswith(b"HTTP/1.1 400") or after.endswith(b"1"), after  # closed
    deadline = time.monotonic() + 5
    while open_fds(live_server.proc.pid) > before + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(live_server.proc.pid) <= before + 5
