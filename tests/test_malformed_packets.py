"""Malformed Socket.IO packets from raw clients against a real gevent server: each one is
answered or closes its own connection, the server's log stays short, its memory stays
bounded, and other clients go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import websocket

from app.auth.tokens import issue_token
from tests.raw_client import RawSocket
from tests.servers import ServerProcess

pytestmark = pytest.mark.server

DEEP = "[" * 1000 + "]" * 1000  # a 2 KB frame of JSON nested 1,000 deep


def rss_kb(server: ServerProcess) -> int:
    """The server process's resident memory, from /proc."""
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def log_lines(server: ServerProcess) -> list[str]:
    return server.log.read_text(errors="replace").splitlines()


@pytest.fixture
def token(admin) -> str:
    return issue_token(admin)


@pytest.fixture
def connect(token):
    """Open RawSockets with the admin's token; closed at the end."""
    opened: list[RawSocket] = []

    def open_raw(server: ServerProcess, namespace: str = "/users") -> RawSocket:
        opened.append(RawSocket(server.port, namespace, token))
        return opened[-1]

    yield open_raw
    for raw in opened:
        raw.close()


@pytest.fixture
def generous(server_factory) -> ServerProcess:
    """A server whose event rate limit no test here reaches: only the log limit applies."""
    return server_factory({"SOCKETIO_EVENT_RATE": "100000", "SOCKETIO_EVENT_BURST": "100000"})


def test_deeply_nested_json_is_answered_with_one_short_log_line(generous, connect):
    raw = connect(generous, "/users")
    before = len(log_lines(generous))
    raw.send(f'42/users,7["latency",{DEEP}]')
    answer = raw.ack(7)
    assert "nested" in answer["error"]
    raw.send(f'42/users,["latency",{DEEP}]')  # no ack asked: an ``error`` event
    assert "nested" in raw.event("error")["error"]
    assert raw.call("latency", {}) == {"ok": True}  # the connection lives on
    new = log_lines(generous)[before:]
    assert 1 <= len(new) <= 2 and "Traceback" not in "\n".join(new), new

    # 2,000 of them: every one answered, a bounded number of log lines.
    for n in range(2000):
        raw.send(f'42/users,{1000 + n}["latency",{DEEP}]')
    for n in range(2000):
        assert "error" in raw.ack(1000 + n)
    new = log_lines(generous)[before:]
    assert len(new) < 40 and "similar lines suppressed" in new[-1], new[-20:]
    other = connect(generous, "/users")
    assert other.call("latency", {}) == {"ok": True}


def test_the_log_names_the_client_behind_a_trusted_proxy(server_factory, token):
    """A proxy's address would say nothing: the client's is the one X-Forwarded-For
    gives, as the connection caps count it."""
    server = server_factory({"SOCKETIO_TRUSTED_PROXIES": "127.0.0.1"})
    raw = RawSocket(server.port, "/users", token, ["X-Forwarded-For: 203.0.113.7"])
    try:
        before = len(log_lines(server))
        raw.send(f'42/users,7["latency",{DEEP}]')
        assert "nested" in raw.ack(7)["error"]
    finally:
        raw.close()
    new = [line for line in log_lines(server)[before:] if "malformed" in line]
    assert len(new) == 1 and "from 203.0.113.7 on /users" in new[0], new


def test_binary_arguments_are_answered_like_any_wrong_type(live_server, connect):
    """A client library sends bytes as a binary packet: each handler refuses them with an
    error answer, and the connection lives on."""
    raw = connect(live_server, "/users")
    raw.send('451-/users,1["subscribe",{"since":{"_placeholder":true,"num":0}}]')
    raw.ws.send_binary(b"abc")
    assert "since must be null" in raw.ack(1)["error"]
    raw.send('452-/users,2["latency",{"a":{"_placeholder":true,"num":1},'
             '"x":[{"_placeholder":true,"num":0}]}]')
    raw.ws.send_binary(b"a")
    raw.ws.send_binary(b"b")
    assert raw.ack(2) == {"ok": True}
    assert raw.call("latency", {}) == {"ok": True}
    demo = connect(live_server, "/demo")
    demo.send('451-/demo,3["my_event",{"data":{"_placeholder":true,"num":0}}]')
    demo.ws.send_binary(b"\x00\xff")
    assert "data must be a string" in demo.ack(3)["error"]
    assert "Traceback" not in "\n".join(log_lines(live_server))


PLACEHOLDER = '{"_placeholder":true,"num":%s}'


@pytest.mark.parametrize("frames", [
    ['4511-/users,1["latency",{"_placeholder":true,"num":0}]'],  # past MAX_ATTACHMENTS
    ['451-/users,1["latency",{"_placeholder":true,"num":0}]', "42/users,[\"latency\"]"],
    [b"attachment that no packet announced"],
    # Each attachment placed once: repeating one would copy it as often.
    ['451-/users,1["latency",[' + ",".join([PLACEHOLDER % 0] * 1000) + "]]", b"x" * 4000],
    ['452-/users,1["latency",' + PLACEHOLDER % 0 + "," + PLACEHOLDER % 5 + "]", b"a", b"b"],
    ['451-/users,1["latency",' + PLACEHOLDER % "true" + "]", b"a"],
    ['451-/users,1["latency",' + PLACEHOLDER % -1 + "]", b"a"],
], ids=["too-many", "text-among-attachments", "unannounced", "repeated", "out-of-range",
        "bool", "negative"])
def test_a_binary_packet_out_of_bounds_closes_only_its_connection(live_server, connect,
                                                                  frames):
    other = connect(live_server, "/users")
    raw = connect(live_server, "/users")
    for frame in frames:
        raw.ws.send_binary(frame) if isinstance(frame, bytes) else raw.send(frame)
    assert raw.closed()
    assert other.call("latency", {}) == {"ok": True}


def test_a_binary_packet_closes_its_connection_and_memory_stays_bounded(live_server, connect):
    other = connect(live_server, "/users")
    baseline = rss_kb(live_server)
    raw = connect(live_server, "/users")
    # Announces attachments that never come: every later frame would be held as one.
    raw.send('4599-/users,1["latency",{"_placeholder":true,"num":0}]')
    filler = "4" + "x" * 55_000
    sent = 0
    try:
        for sent in range(1500):  # noqa: B007 - how far it got is reported below
            raw.ws.send(filler)
    except (websocket.WebSocketException, OSError):  # closed by the server
        pass
    assert raw.closed(), f"the connection still took {sent} frames"
    assert rss_kb(live_server) - baseline < 30_000  # kB: not the 83 MB of 1,500 frames
    assert other.call("latency", {}) == {"ok": True}
    assert "Traceback" not in "\n".join(log_lines(live_server))


BAD_EVENTS = [
    '["latency",{},{}]',  # two arguments
    '["latency",1,2,3]',
    '["subscribe","x","y"]',
    "[]",  # no event name
    "[5]",  # an event name that is no string
    '[null,{}]',
    '{"event":"latency"}',  # not a list
    '"latency"',
    "true",
    '["connect",{}]',  # reserved names
    '["disconnect"]',
    '["no_such_event",{}]',
    "[1",  # not JSON at all
]


@pytest.mark.parametrize("namespace", ["/users", "/chat", "/demo"])
def test_wrong_arguments_to_any_event_are_answered_and_the_connection_lives(
        live_server, connect, namespace):
    raw = connect(live_server, namespace)
    ok_event = {"/users": ("latency", {}), "/chat": ("history", {"room": "lobby"}),
                "/demo": ("disconnect_request", {})}[namespace]
    for n, bad in enumerate(BAD_EVENTS):
        raw.send(f"42{namespace},{n + 1}{bad}")
        answer = raw.ack(n + 1)
        assert isinstance(answer, dict) and answer.get("error"), (bad, answer)
    raw.send(f'42{namespace},["latency",{{}},{{}}]')  # without an ack id: an error event
    assert raw.event("error")["error"]
    if namespace != "/demo":
        assert "error" not in raw.call(*ok_event)
    log = "\n".join(log_lines(live_server))
    assert "Traceback" not in log and "TypeError" not in log, log[-3000:]


def test_a_binary_message_over_polling_closes_the_session_at_once(live_server, token):
    base = f"{live_server.url}/socket.io/?EIO=4&transport=polling"
    with requests.Session() as http:
        sid = json.loads(http.get(base, timeout=10).text[1:])["sid"]
        url = f"{base}&sid={sid}"
        assert http.post(url, data=f"40/users,{json.dumps({'token': token})}",
                         timeout=10).ok
        assert http.get(url, timeout=10).text.startswith("40/users,")
        answer = http.post(url, data="bAAECAw==", timeout=10)  # answered, not held
        assert answer.status_code == 200
        after = http.get(url, timeout=10)
        assert after.status_code == 400 or after.text.startswith("1"), after.text


def test_a_packet_of_no_known_type_closes_only_its_connection(live_server, connect):
    other = connect(live_server, "/users")
    for frame in ("49/users,[]", "44/users,{}", "4x", "4"):
        raw = connect(live_server, "/users")
        raw.send(frame)
        assert raw.closed(), frame
    assert other.call("latency", {}) == {"ok": True}
    assert "Traceback" not in "\n".join(log_lines(live_server))


def test_a_nul_in_any_string_is_answered_and_the_connection_lives(live_server, connect):
    """PostgreSQL cannot store NUL, SQLite's full-text search chokes on it: refused at
    decoding, whatever the event, as the API refuses it."""
    users, chat = connect(live_server, "/users"), connect(live_server, "/chat")
    assert "NUL" in users.call("subscribe", {"view": {"q": "a\x00b"}})["error"]
    assert chat.call("join", {"room": "lobby"})["ok"]
    assert "NUL" in chat.call("message", {"room": "lobby", "text": "nul\x00"})["error"]
    assert "NUL" in chat.call("message", {"room": "lobby", "text": "x", "\x00": 1})["error"]
    assert chat.call("history", {"room": "lobby"})["messages"] == []
    assert users.call("latency", {}) == {"ok": True}


def test_engineio_json_nesting_is_refused_too(live_server, connect):
    raw = connect(live_server, "/users")
    raw.send("4" + DEEP)  # an Engine.IO message that is JSON but no Socket.IO packet
    assert raw.closed()
    assert "Traceback" not in "\n".join(log_lines(live_server))
