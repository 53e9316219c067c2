"""Room events written straight to WebSockets (``app.realtime.fanout``) on a real server:
a subscriber that stops reading holds up neither the feed nor anyone else, and gets every
change once, in order, when it reads again; plain and compressed sockets share an emit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import gevent.socket
import pytest
from geventwebsocket.websocket import Stream

from app.auth.tokens import issue_token
from app.websocket import LimitedWebSocket
from tests.raw_ws import RawWebSocket
from tests.test_websocket_limits import EIO_WS

pytestmark = pytest.mark.server
CHANGES = 1500


def next_text(ws: RawWebSocket) -> str:
    """The next Engine.IO message (inflated if compressed); pings are answered."""
    while True:
        opcode, payload = ws.recv_frame()
        if opcode == 8:
            raise ConnectionError(f"closed: {payload!r}")
        if opcode != 1:
            continue
        if ws.compressed:
            payload = RawWebSocket.inflate(payload)
        text = payload.decode()
        if text == "2":
            ws.send_text("3")
            continue
        return text


def subscriber(port: int, token: str, **options) -> RawWebSocket:
    """A raw WebSocket subscribed to the plain change stream from now on."""
    ws = RawWebSocket(port, EIO_WS, **options)
    assert next_text(ws).startswith("0{")
    ws.send_text("40/users," + json.dumps({"token": token}))
    while not next_text(ws).startswith("40/users,"):
        pass
    ws.send_text('42/users,1["subscribe",{"since":null}]')
    while not (answer := next_text(ws)).startswith("43/users,1"):
        pass
    assert "error" not in answer
    return ws


def cursors(ws: RawWebSocket, count: int, timeout: float) -> list[int]:
    """The cursors of the next ``count`` changes ws receives, as received."""
    ws.sock.settimeout(timeout)
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"{len(seen)} of {count} changes"
        text = next_text(ws)
        if text.startswith("42/users,"):
            event, data = json.loads(text.removeprefix("42/users,"))
            if event in ("change", "changes"):
                seen += [c["cursor"] for c in (data if event == "changes" else [data])]
    return seen


def write_changes(db_url: str, user_id: int, count: int) -> subprocess.Popen:
    """Another program updating one user ``count`` times, one commit each."""
    code = ("import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
            "for i in range(int(sys.argv[3])):\n"
            "    c.execute('UPDATE users SET email = ? WHERE id = ?',\n"
            "              (f'fan{i}-' + 'x' * 150 + '@example.com', int(sys.argv[2])))\n"
            "    time.sleep(0.001)\n")
    return subprocess.Popen([sys.executable, "-c", code, db_url.removeprefix("sqlite:///"),
                             str(user_id), str(count)])


def test_a_subscriber_that_stops_reading_holds_up_no_one_and_loses_nothing(
        db_url, live_server, admin):
    token = issue_token(admin)
    stalled = subscriber(live_server.port, token, receive_buffer=4096)
    brisk = subscriber(live_server.port, token,
                       extra_headers="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    writer = write_changes(db_url, admin.id, CHANGES)
    try:
        # The brisk one gets every change while the stalled one reads nothing at all.
        got = cursors(brisk, CHANGES, timeout=60)
        assert got == sorted(set(got)) and len(got) == CHANGES
        assert writer.wait(timeout=30) == 0
        # Then the stalled one reads: the same changes, once each, in order.
        assert cursors(stalled, CHANGES, timeout=60) == got
    finally:
        writer.kill()
        stalled.close()
        brisk.close()


def test_a_frame_the_socket_takes_only_in_part_is_finished_before_any_other():
    """``send_now`` on a socket whose buffer takes part of the frame: it returns at once
    (the rest goes out in the background), a second ``send_now`` is refused rather than
    cut in, and a frame sent the usual way meanwhile follows the whole first one."""
    server_side, client_side = gevent.socket.socketpair()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    handler = SimpleNamespace(socket=server_side, rfile=server_side.makefile("rb"),
                              application=None)
    ws = LimitedWebSocket({}, Stream(handler), handler, max_size=1_000_000)
    big = "".join(f"change {i};" for i in range(50_000))  # far more than the buffers hold

    started = time.monotonic()
    assert ws.send_now(big, {}) is True
    assert time.monotonic() - started < 0.5  # did not wait for the reader
    assert ws.send_now("cutting in", {}) is False  # the caller queues it instead
    queued = gevent.spawn(ws.send, "next")  # Engine.IO's writer, waiting its turn
    reader = RawWebSocket.over(client_side)
    frames = [reader.recv_frame() for _ in range(2)]
    assert [(opcode, payload.decode()) for opcode, payload in frames] == [(1, big), (1, "next")]
    queued.join(timeout=5)
    assert queued.successful()
    ws.close()
    handler.rfile.close()
    server_side.close()
    client_side.close()


def test_a_frame_never_cuts_in_before_a_writer_waiting_for_the_socket():
    """The moment a frame's writer lets go of the socket, Engine.IO's writer waiting with
    a packet in hand has not run yet: ``send_now`` must leave the socket to it."""
    server_side, client_side = gevent.socket.socketpair()
    handler = SimpleNamespace(socket=server_side, rfile=server_side.makefile("rb"),
                              application=None)
    ws = LimitedWebSocket({}, Stream(handler), handler, max_size=1_000_000)
    ws.sending.acquire()  # a frame being written
    queued = gevent.spawn(ws.send, "queued first")
    gevent.sleep(0)  # the writer now waits for the socket
    ws.sending.release()
    assert ws.send_now("fanned out", {}) is False  # the caller queues it behind
    queued.join(timeout=5)
    assert ws.send_now("fanned out", {}) is True  # nobody waits any more
    reader = RawWebSocket.over(client_side)
    assert [reader.recv_frame()[1].decode() for _ in range(2)] == [
        "queued first", "fanned out"]
    ws.close()
    handler.rfile.close()
    server_side.close()
    client_side.close()
