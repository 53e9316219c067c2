"""The /chat namespace through Flask-SocketIO's test client (one app, no server)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask_socketio import SocketIOTestClient

from app.auth.tokens import issue_token
from app.chat import bridge, store
from app.chat.hub import CLOSE_GRACE, Bridge, chat_hub, close_user_bridges
from app.chat.relay import chat_relay, envelope
from app.chat.rules import MAX_TEXT, TokenBucket
from app.extensions import db, socketio
from app.models import ChatMessage, User
from app.realtime.namespace import socket_error_handler
from tests.conftest import login

NS = "/chat"


def quick_user(username: str) -> User:
    """A user without a password (no slow hashing): these tests connect with tokens."""
    user = User(username=username, email=f"{username}@example.com")
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def connect(sockets) -> Callable[..., SocketIOTestClient]:
    """A chat socket of a user (created on first use); a second call, a second tab."""

    def open_socket(username: str, keep: bool = False) -> SocketIOTestClient:
        sio = sockets(NS, store.user_named(username) or quick_user(username))
        assert sio.is_connected(NS)
        if not keep:
            sio.get_received(NS)
        return sio

    return open_socket


def call(sio: SocketIOTestClient, event: str, data: Any = None) -> Any:
    return sio.emit(event, data, namespace=NS, callback=True)


def events(sio: SocketIOTestClient, name: str) -> list[Any]:
    """Payloads of the ``name`` events received since the last look."""
    out = []
    for packet in sio.get_received(NS):
        if packet["name"] == name:
            args = packet["args"]
            out.append(args if name == "message" else args[0])
    return out


def received(sio: SocketIOTestClient) -> list[tuple[str, Any]]:
    return [(p["name"], p["args"] if p["name"] == "message" else p["args"][0])
            for p in sio.get_received(NS)]


def test_anonymous_is_refused_session_and_token_holders_connect(app, client, make_user):
    assert not socketio.test_client(app, namespace=NS).is_connected(NS)
    assert not socketio.test_client(app, namespace=NS, auth={"token": "nope"}).is_connected(NS)
    token = issue_token(quick_user("tina"))
    sio = socketio.test_client(app, namespace=NS, auth={"token": token})
    assert events(sio, "status") == [{"room": None, "text": "connected as tina"}]
    make_user("alice")
    login(client, "alice")
    browser = socketio.test_client(app, namespace=NS, flask_test_client=client)
    assert events(browser, "status") == [{"room": None, "text": "connected as alice"}]
    answer = browser.emit("message", {"room": "r", "text": "x"}, namespace=NS, callback=True)
    assert answer == {"error": "join the room first"}


def test_join_announces_shows_presence_and_history(connect):
    alice = connect("alice")
    for i in range(55):
        store.save_message(store.user_named("alice").id, f"old {i}", room="lobby")
    answer = call(alice, "join", {"room": "lobby"})
    assert answer["ok"] and answer["users"] == ["alice"]
    assert [m["text"] for m in answer["history"]] == [f"old {i}" for i in range(5, 55)]
    bob = connect("bob")
    assert call(bob, "join", {"room": "lobby"})["users"] == ["alice", "bob"]
    seen = received(alice)
    assert ("status", {"room": "lobby", "text": "bob joined"}) in seen
    assert ("presence", {"room": "lobby", "users": ["alice", "bob"]}) in seen


def test_leave_and_disconnect_announce_once_per_user(connect):
    alice, bob, bob_tab = connect("alice"), connect("bob"), connect("bob")
    for sio in (alice, bob, bob_tab):
        call(sio, "join", {"room": "lobby"})
    assert received(alice).count(("status", {"room": "lobby", "text": "bob joined"})) == 1
    assert call(bob, "leave", {"room": "lobby"}) == {"ok": True, "room": "lobby"}
    seen = received(alice)
    assert ("presence", {"room": "lobby", "users": ["alice", "bob"]}) in seen
    assert not [s for name, s in seen if name == "status"]  # bob still has a tab there
    bob_tab.disconnect(namespace=NS)
    seen = received(alice)
    assert ("status", {"room": "lobby", "text": "bob left"}) in seen
    assert ("presence", {"room": "lobby", "users": ["alice"]}) in seen
    assert call(alice, "leave", {"room": "elsewhere"}) == {"error": "you are not in that room"}


def test_message_reaches_the_room_only_with_the_login_name(connect):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    call(alice, "join", {"room": "lobby"})
    call(bob, "join", {"room": "lobby"})
    call(carol, "join", {"room": "other"})
    for sio in (alice, bob, carol):
        sio.get_received(NS)
    answer = call(alice, "message", {"room": "lobby", "text": "hello", "user": "mallory"})
    assert answer["ok"] and answer["message"]["user"] == "alice"
    for sio in (alice, bob):
        [message] = events(sio, "message")
        assert (message["user"], message["text"], message["room"]) == ("alice", "hello", "lobby")
    assert events(carol, "message") == []
    answer = call(carol, "message", {"room": "lobby", "text": "x"})
    assert answer == {"error": "join the room first"}


def test_same_client_id_is_stored_and_delivered_once(connect):
    alice, bob = connect("alice"), connect("bob")
    call(alice, "join", {"room": "lobby"})
    call(bob, "join", {"room": "lobby"})
    bob.get_received(NS)
    first = call(alice, "message", {"room": "lobby", "text": "once", "id": "m-1"})
    again = call(alice, "message", {"room": "lobby", "text": "once", "id": "m-1"})
    assert again["duplicate"] and again["message"] == first["message"]
    assert len(events(bob, "message")) == 1
    assert len(store.room_history("lobby")) == 1


@pytest.mark.parametrize("event,data,error", [
    ("join", "lobby", "payload must be an object"),
    ("join", {}, "room must be a string"),
    ("join", {"room": "no spaces"}, "bad room name"),
    ("join", {"room": "x" * 33}, "bad room name"),
    ("join", {"room": "lobby\n"}, "bad room name"),
    ("join", {"room": "user-1\n"}, "bad room name"),
    ("join", {"room": "user-999"}, "another user's private room"),
    ("join", {"room": "user:999"}, "another user's private room"),
    ("message", ["lobby", "hi"], "payload must be an object"),
    ("message", {"room": "lobby"}, "text must be a non-empty string"),
    ("message", {"room": "lobby", "text": "   "}, "text must be a non-empty string"),
    ("message", {"room": "lobby", "text": "x" * (MAX_TEXT + 1)}, "text too long"),
    ("message", {"room": "lobby", "text": "hi", "id": 5}, "id must be a string"),
    ("private", {"to": "nobody", "text": "hi"}, "unknown user 'nobody'"),
    ("private", {"to": 3, "text": "hi"}, "unknown user 3"),
    ("history", {"with": "nobody"}, "unknown user 'nobody'"),
    ("shout", {}, "unknown event 'shout'"),
])
def test_bad_events_get_an_error_answer_and_the_connection_lives(connect, event, data, error):
    alice = connect("alice")
    call(alice, "join", {"room": "lobby"})
    answer = call(alice, event, data)
    assert error in answer["error"]
    assert alice.is_connected(NS)
    assert call(alice, "message", {"room": "lobby", "text": "still here"})["ok"]


def test_own_private_room_may_be_joined(connect):
    alice = connect("alice")
    own = f"user-{store.user_named('alice').id}"
    assert call(alice, "join", {"room": own})["ok"]


def test_without_ack_the_error_comes_as_an_event(connect):
    alice = connect("alice")
    alice.emit("join", {"room": "bad room"}, namespace=NS)
    [error] = events(alice, "error")
    assert "bad room name" in error["error"]


@pytest.fixture
def realtime_log(monkeypatch, caplog) -> pytest.LogCaptureFixture:
    """Records of ``app.realtime`` (which the migrations' ``fileConfig`` disabled)."""
    monkeypatch.setattr(logging.getLogger("app.realtime"), "disabled", False)
    caplog.set_level(logging.INFO)
    return caplog


@pytest.mark.parametrize("args,error", [
    (({"room": "lobby"}, "extra"), "'join' takes at most one argument, a payload object"),
    (({"room": "lobby"}, 1, 2), "'join' takes at most one argument, a payload object"),
    (("lobby",), "payload must be an object"),
])
def test_bad_arguments_get_one_clean_answer(connect, realtime_log, args, error):
    alice = connect("alice")
    assert alice.emit("join", *args, namespace=NS, callback=True) == {"error": error}
    assert received(alice) == []  # the ack only, no error event as well
    alice.emit("join", *args, namespace=NS)
    assert received(alice) == [("error", {"error": error})]
    assert [r for r in realtime_log.records if r.levelno >= logging.WARNING] == []
    assert call(alice, "join", {"room": "lobby"})["ok"]


@pytest.mark.parametrize("auth", [{"token": 123}, {"token": ["x"]}, {"token": {}}, "tok", 5])
def test_malformed_auth_is_refused_without_a_traceback(app, client, make_user, realtime_log,
                                                      auth):
    for namespace in (NS, "/demo"):
        sio = socketio.test_client(app, namespace=namespace, auth=auth)
        assert not sio.is_connected(namespace)
    assert [r for r in realtime_log.records if r.levelno >= logging.WARNING] == []
    make_user("alice")
    login(client, "alice")  # the login session is enough; a junk token does not spoil it
    browser = socketio.test_client(app, namespace=NS, auth=auth, flask_test_client=client)
    assert events(browser, "status") == [{"room": None, "text": "connected as alice"}]


def test_rate_limit_is_per_connection(connect):
    alice, alice_tab = connect("alice"), connect("alice")
    for sio in (alice, alice_tab):
        call(sio, "join", {"room": "lobby"})
    answers = [call(alice, "message", {"room": "lobby", "text": f"m{i}"}) for i in range(12)]
    assert all(a.get("ok") for a in answers[:10])
    assert answers[-1]["error"].startswith("rate limit")
    assert call(alice_tab, "message", {"room": "lobby", "text": "other tab"})["ok"]
    assert alice.is_connected(NS)


def test_private_reaches_every_session_of_the_recipient_only(connect):
    alice, bob, bob_tab, carol = connect("alice"), connect("bob"), connect("bob"), connect("carol")
    answer = call(alice, "private", {"to": "bob", "text": "psst", "user": "carol"})
    assert answer["ok"] and answer["message"]["user"] == "alice"
    for sio in (bob, bob_tab):
        [message] = events(sio, "private")
        assert (message["user"], message["to"], message["text"]) == ("alice", "bob", "psst")
    assert events(carol, "private") == [] and events(alice, "private") == []
    history = call(bob, "history", {"with": "alice"})["messages"]
    assert [m["text"] for m in history] == ["psst"]
    assert call(alice, "private", {"to": "BOB", "text": "again"})["message"]["to"] == "bob"


def test_offline_recipient_gets_private_messages_on_next_connect(connect):
    quick_user("bob")
    alice = connect("alice")
    call(alice, "private", {"to": "bob", "text": "while you were out"})
    bob = connect("bob", keep=True)
    assert [m["text"] for m in events(bob, "private")] == ["while you were out"]
    assert connect("bob", keep=True) and events(connect("bob", keep=True), "private") == []
    assert store.undelivered(store.user_named("bob").id) == []


def test_history_of_a_room(connect):
    alice = connect("alice")
    call(alice, "join", {"room": "lobby"})
    call(alice, "message", {"room": "lobby", "text": "one"})
    answer = call(alice, "history", {"room": "lobby"})
    assert [m["text"] for m in answer["messages"]] == ["one"]


def test_handler_crash_is_logged_answered_and_survived(connect, monkeypatch, caplog):
    alice = connect("alice")
    call(alice, "join", {"room": "lobby"})

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "save_message", boom)
    # The migrations' logging.config.fileConfig disabled the loggers existing then.
    monkeypatch.setattr(logging.getLogger("app.realtime"), "disabled", False)
    with caplog.at_level(logging.ERROR, logger="app.realtime"):
        answer = call(alice, "message", {"room": "lobby", "text": "hi"})
        alice.emit("message", {"room": "lobby", "text": "no ack"}, namespace=NS)
    assert answer == {"error": "internal server error", "event": "message"}
    assert events(alice, "error") == [answer]  # once: for the event without an ack
    first, _ = caplog.records
    assert "namespace=/chat event=message user=alice" in first.getMessage()
    assert first.exc_info[0] is RuntimeError
    monkeypatch.undo()
    assert call(alice, "message", {"room": "lobby", "text": "after"})["ok"]


def test_default_error_handler_covers_other_namespaces(app, monkeypatch, caplog):
    """``socket_error_handler`` as ``on_error_default``: here for /demo without its own."""
    monkeypatch.setattr(logging.getLogger("app.realtime"), "disabled", False)
    monkeypatch.setattr(socketio, "start_background_task", lambda *args: None)  # no ticker
    monkeypatch.delitem(socketio.exception_handlers, "/demo")
    monkeypatch.setattr(socketio, "default_exception_handler", socket_error_handler)
    token = issue_token(quick_user("al"))
    sio = socketio.test_client(app, namespace="/demo", auth={"token": token})
    demo = socketio.server.namespace_handlers["/demo"]
    monkeypatch.setattr(demo, "on_my_ping", lambda *a: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="app.realtime"):
        sio.emit("my_ping", namespace="/demo")
    assert "namespace=/demo event=my_ping user=al" in caplog.records[0].getMessage()
    assert {"name": "error", "args": [{"error": "internal server error", "event": "my_ping"}],
            "namespace": "/demo"} in sio.get_received("/demo")
    assert sio.is_connected("/demo")


def test_chat_page_needs_login_and_has_no_inline_script(client, make_user):
    assert client.get("/chat").status_code == 302
    make_user("alice")
    login(client, "alice")
    html = client.get("/chat").get_data(as_text=True)
    assert 'data-username="alice"' in html
    assert re.findall(r"<script[^>]*>", html) == [
        '<script type="module" src="/static/js/chat.js">'
    ]
    assert "css/realtime.css" in html
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no inline event handlers


def test_websocket_endpoint_needs_an_upgrade(client):
    answer = client.get("/ws/chat/lobby")
    assert answer.status_code == 400
    assert b"WebSocket upgrade required" in answer.data


def test_stored_message_shape(connect):
    alice = connect("alice")
    call(alice, "join", {"room": "lobby"})
    message = call(alice, "message", {"room": "lobby", "text": "hi", "id": "c1"})["message"]
    assert set(message) >= {"id", "room", "user", "text", "ts", "client_id", "to"}
    row = store.room_history("lobby")[0]
    assert isinstance(row, ChatMessage) and row.client_id == "c1" and row.sender.username == "alice"


class FakeWebSocket:
    """The part of gevent-websocket's ``WebSocket`` the hub uses, recording frames."""

    OPCODE_CLOSE = 8

    def __init__(self) -> None:
        self.closed = False
        self.frames: list[tuple[int, bytes | str]] = []

    def send(self, message: str) -> None:
        self.frames.append((1, message))

    def send_frame(self, message: bytes, opcode: int) -> None:
        self.frames.append((opcode, message))

    def abort(self) -> None:
        self.closed = True


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_close_user_bridges_closes_that_users_websockets_only(connect):
    alice = connect("alice")
    call(alice, "join", {"room": "lobby"})
    bob_id, carol_id = quick_user("bob").id, quick_user("carol").id
    hub = chat_hub()
    sockets = {name: FakeWebSocket() for name in ("bob1", "bob2", "carol")}
    bridges = {}
    for conn, user_id, name, room in [("bob1", bob_id, "bob", "lobby"),
                                      ("bob2", bob_id, "bob", "other"),
                                      ("carol", carol_id, "carol", "lobby")]:
        bridges[conn] = Bridge(conn, user_id, room, sockets[conn])
        threading.Thread(target=bridges[conn].write, daemon=True).start()
        hub.join(conn, name, room, bridges[conn])
    alice.get_received(NS)

    close_user_bridges(bob_id)
    for conn in ("bob1", "bob2"):
        assert bridges[conn].done.wait(5)
        assert sockets[conn].closed
        assert sockets[conn].frames == [
            (1, '{"error": "account deactivated"}'),
            (8, (1008).to_bytes(2, "big") + b"account deactivated"),
        ]
    assert hub.bridges_of(bob_id) == [] and hub.rooms_of("bob1") == []
    assert ("status", {"room": "lobby", "text": "bob left"}) in received(alice)
    assert not sockets["carol"].closed and len(hub.bridges_of(carol_id)) == 1
    # Nothing more reaches a closed socket, and closing again changes nothing.
    call(alice, "message", {"room": "lobby", "text": "still there?"})
    close_user_bridges(bob_id)
    assert len(sockets["bob1"].frames) == 2
    wait_for(lambda: bool(sockets["carol"].frames))
    assert [f for _, f in sockets["carol"].frames][-1].startswith('{"id"')
    bridges["carol"].finish()


class StuckWebSocket(FakeWebSocket):
    """A socket whose client stopped reading: once its buffers are full, a send blocks
    until the connection is cut (``abort``)."""

    def __init__(self, buffered: int) -> None:
        super().__init__()
        self.buffered = buffered
        self.cut = threading.Event()

    def send(self, message: str) -> None:
        if len(self.frames) >= self.buffered:
            self.cut.wait()
            raise OSError("connection shut down")
        super().send(message)

    def abort(self) -> None:
        super().abort()
        self.cut.set()  # the blocked send fails


def test_a_websocket_that_does_not_read_holds_up_no_one(connect):
    """While one plain WebSocket's sends are blocked, the room's messages reach every
    other client and the deliverer is never kept waiting; once a send has waited the
    send timeout, the next message cuts that socket off and it leaves the room. (Its
    blocked send used to hold up the room's delivery, the relay, and the feed closing a
    deactivated user's sockets, for as long as its client did not read.)"""
    alice = connect("alice")
    call(alice, "join", {"room": "lobby"})
    hub = chat_hub()
    sockets = {"stuck": StuckWebSocket(buffered=5), "fine": FakeWebSocket()}
    bridges = {}
    for conn, ws in sockets.items():
        bridges[conn] = Bridge(conn, quick_user(conn).id, "lobby", ws, send_timeout=0.2)
        threading.Thread(target=bridges[conn].write, daemon=True).start()
        hub.join(conn, conn, "lobby", bridges[conn])
    alice.get_received(NS)

    frames = [json.dumps({"n": n}) for n in range(40)]
    for frame in frames:  # as the relay delivers them, the stream's lock held
        hub.send_bridges("lobby", json.loads(frame))
    wait_for(lambda: len(sockets["fine"].frames) == len(frames))
    assert [f for _, f in sockets["fine"].frames] == frames
    assert [f for _, f in sockets["stuck"].frames] == frames[:5] and not sockets["stuck"].closed

    time.sleep(0.3)  # the stuck send has now waited longer than the timeout
    hub.send_bridges("lobby", {"n": 40})
    assert bridges["stuck"].done.wait(5) and sockets["stuck"].closed
    assert hub.users("lobby") == ["alice", "fine"]
    assert ("status", {"room": "lobby", "text": "stuck left"}) in received(alice)
    wait_for(lambda: len(sockets["fine"].frames) == len(frames) + 1)
    bridges["fine"].finish()
    assert bridges["fine"].done.is_set()


def test_a_stuck_websocket_of_a_deactivated_user_is_cut_off(connect):
    """Closing a socket whose client does not read: its close frame cannot get out, and
    no other frame comes to notice it; it is cut off within the close grace all the same
    (deactivations close every connection within 3 s)."""
    bob = quick_user("bob")
    hub = chat_hub()
    ws = StuckWebSocket(buffered=1)
    stuck = Bridge("bob1", bob.id, "lobby", ws, send_timeout=60)
    threading.Thread(target=stuck.write, daemon=True).start()
    hub.join("bob1", "bob", "lobby", stuck)
    hub.send_bridges("lobby", {"n": 1})
    hub.send_bridges("lobby", {"n": 2})  # its send blocks: the client reads nothing
    wait_for(lambda: stuck.sending_since is not None)
    started = time.monotonic()
    close_user_bridges(bob.id)
    assert stuck.done.wait(CLOSE_GRACE + 2) and ws.closed
    assert time.monotonic() - started < 3
    assert hub.bridges_of(bob.id) == [] and hub.rooms_of("bob1") == []


@pytest.mark.parametrize("change", ["deactivate", "delete"])
def test_websocket_frame_of_a_gone_user_is_refused_unstored(app, change):
    bob = quick_user("bob")
    me = {"id": bob.id, "username": "bob"}
    with app.test_request_context("/ws/chat/lobby"):
        assert bridge.handle_frame('{"text": "hi"}', me, "lobby", TokenBucket()) is None
        if change == "deactivate":
            db.session.get(User, me["id"]).active = False
        else:
            db.session.delete(db.session.get(User, me["id"]))
        db.session.commit()
        with pytest.raises(bridge.AccountGone):
            bridge.handle_frame('{"text": "after"}', me, "lobby", TokenBucket())
    assert "after" not in [m.text for m in store.room_history("lobby")]


def test_a_gap_in_a_streams_seq_waits_and_is_filled_from_the_database(connect):
    """A message stored elsewhere (another process whose notice never came) holds the next
    one back until the relay reads it from the database: both arrive, in order, once."""
    alice, bob = connect("alice"), connect("bob")
    call(alice, "join", {"room": "lobby"})
    call(bob, "join", {"room": "lobby"})
    bob.get_received(NS)
    relay = chat_relay()
    unseen, _ = store.save_message(quick_user("carol").id, "from elsewhere", room="lobby")
    call(alice, "message", {"room": "lobby", "text": "next"})
    assert events(bob, "message") == []  # seq 2 came before seq 1: held back
    relay.fill(["r:lobby"])
    got = events(bob, "message")
    assert [(m["seq"], m["text"]) for m in got] == [(1, "from elsewhere"), (2, "next")]
    relay.fill([], sweep=True)  # nothing comes twice
    relay.offer(envelope(unseen))
    assert events(bob, "message") == []
