"""The /demo namespace (Flask-SocketIO's classic example) through the test client."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask_socketio import SocketIOTestClient

from app.extensions import db, socketio
from app.models import User
from tests.conftest import login

NS = "/demo"


@pytest.fixture
def tasks(monkeypatch) -> list[tuple[Any, ...]]:
    """Background tasks asked for, recorded instead of started: no thread outlives a test.

    The ticker's body is ``DemoNamespace.tick``, which the tests call themselves.
    """
    started: list[tuple[Any, ...]] = []

    def record(target: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        started.append((target, *args))
        return f"task-{len(started)}"

    monkeypatch.setattr(socketio, "start_background_task", record)
    return started


@pytest.fixture
def demo(sockets, tasks) -> Callable[[str], SocketIOTestClient]:
    """Connect a /demo test client for a (new) user; the ticker is not started."""

    def open_socket(username: str) -> SocketIOTestClient:
        user = User(username=username, email=f"{username}@example.com")
        db.session.add(user)
        db.session.commit()
        sio = sockets(NS, user)
        assert sio.is_connected(NS)
        return sio

    return open_socket


def responses(sio: SocketIOTestClient, name: str = "my_response") -> list[Any]:
    return [p["args"][0] if p["args"] else None for p in sio.get_received(NS) if p["name"] == name]


def namespace():
    return socketio.server.namespace_handlers[NS]


def test_connect_needs_credentials_and_says_connected(app, demo):
    assert not socketio.test_client(app, namespace=NS).is_connected(NS)
    assert responses(demo("alice")) == [{"data": "Connected", "count": 0}]


def test_echo_counts_per_session(demo):
    alice, bob = demo("alice"), demo("bob")
    for sio in (alice, bob):
        sio.get_received(NS)
    alice.emit("my_event", {"data": "one"}, namespace=NS)
    alice.emit("my_event", {"data": "two"}, namespace=NS)
    bob.emit("my_event", {"data": "three"}, namespace=NS)
    assert responses(alice) == [{"data": "one", "count": 1}, {"data": "two", "count": 2}]
    assert responses(bob) == [{"data": "three", "count": 1}]


def test_broadcast_reaches_every_client(demo):
    alice, bob = demo("alice"), demo("bob")
    for sio in (alice, bob):
        sio.get_received(NS)
    bob.emit("my_broadcast_event", {"data": "all"}, namespace=NS)
    assert responses(alice) == responses(bob) == [{"data": "all", "count": 1}]


def test_rooms_join_leave_send_and_close(demo):
    alice, bob = demo("alice"), demo("bob")
    for sio in (alice, bob):
        sio.get_received(NS)
    alice.emit("join", {"room": "red"}, namespace=NS)
    alice.emit("join", {"room": "blue"}, namespace=NS)
    assert responses(alice)[-1]["data"] == "In rooms: blue, red"
    alice.emit("leave", {"room": "blue"}, namespace=NS)
    assert responses(alice)[-1]["data"] == "In rooms: red"
    bob.emit("my_room_event", {"room": "red", "data": "to red"}, namespace=NS)
    assert [r["data"] for r in responses(alice)] == ["to red"]
    assert responses(bob) == []  # bob is not in red
    bob.emit("close_room", {"room": "red"}, namespace=NS)
    assert [r["data"] for r in responses(alice)] == ["Room red is closing."]
    bob.emit("my_room_event", {"room": "red", "data": "anyone?"}, namespace=NS)
    assert responses(alice) == []


def test_disconnect_request_waits_for_the_acknowledgement(demo):
    alice = demo("alice")
    alice.get_received(NS)
    alice.emit("disconnect_request", namespace=NS)
    assert [r["data"] for r in responses(alice)] == ["Disconnected!"]
    # The test client never acknowledges: the server has not disconnected it.
    assert alice.is_connected(NS)


def test_ping_gets_pong(demo):
    alice = demo("alice")
    alice.get_received(NS)
    alice.emit("my_ping", namespace=NS)
    assert [p["name"] for p in alice.get_received(NS)] == ["my_pong"]


def test_ticker_starts_once_and_a_tick_reaches_everyone(app, demo, tasks):
    alice, bob = demo("alice"), demo("bob")
    demo("carol")
    ticker = [task for task in tasks if task[0] == namespace()._tick_forever]
    assert ticker == [(namespace()._tick_forever, app)] and namespace().ticker is not None
    for sio in (alice, bob):
        sio.get_received(NS)
    namespace().tick(app)
    for sio in (alice, bob):
        [tick] = responses(sio)
        assert tick == {"data": "Server generated event", "count": 1, "users": 3}


class Stop(Exception):
    """Ends ``_tick_forever`` in the test."""


def test_ticker_loop_sleeps_ticks_and_survives_a_failed_tick(app, monkeypatch, caplog):
    app.config["DEMO_TICK_SECONDS"] = 7
    sleeps: list[float] = []
    ticks: list[int] = []

    def sleep(seconds: float) -> None:
        if len(sleeps) == 3:
            raise Stop
        sleeps.append(seconds)

    def tick(app_: Any) -> None:
        ticks.append(len(sleeps))
        if len(ticks) == 1:
            raise RuntimeError("database away")

    monkeypatch.setattr(socketio, "sleep", sleep)
    monkeypatch.setattr(namespace(), "tick", tick)
    monkeypatch.setattr(app.logger, "disabled", False)
    with pytest.raises(Stop):
        namespace()._tick_forever(app)
    assert sleeps == [7, 7, 7] and ticks == [1, 2, 3]
    assert [r.getMessage() for r in caplog.records] == ["demo ticker failed"]


@pytest.mark.parametrize("event,data,error", [
    ("my_event", "plain", "payload must be an object"),
    ("my_event", {"data": 5}, "data must be a string"),
    ("join", {"room": "a b"}, "bad room name"),
    ("my_room_event", {"room": "user:999", "data": "x"}, "another user's private room"),
    ("unknown", {}, "unknown event 'unknown'"),
])
def test_bad_events_get_an_error_answer(demo, event, data, error):
    alice = demo("alice")
    alice.get_received(NS)
    assert error in alice.emit(event, data, namespace=NS, callback=True)["error"]
    alice.emit(event, data, namespace=NS)
    [answer] = responses(alice, "error")
    assert error in answer["error"]
    assert alice.is_connected(NS)


@pytest.mark.parametrize("event", ["my_event", "my_ping", "disconnect_request"])
def test_extra_arguments_get_one_error_answer(demo, event):
    alice = demo("alice")
    alice.get_received(NS)
    error = f"{event!r} takes at most one argument, a payload object"
    assert alice.emit(event, {"data": "x"}, "extra", namespace=NS, callback=True) == {
        "error": error}
    assert alice.get_received(NS) == []  # the ack only
    alice.emit(event, {"data": "x"}, "extra", namespace=NS)
    assert responses(alice, "error") == [{"error": error}]
    assert alice.is_connected(NS)


def test_page_needs_login_and_shows_the_async_mode(client, make_user):
    assert client.get("/playground").status_code == 302
    make_user("alice")
    login(client, "alice")
    html = client.get("/playground").get_data(as_text=True)
    assert '<b id="async-mode">threading</b>' in html
    assert '<script type="module" src="/static/js/playground.js">' in html


def test_events_leave_nothing_for_the_garbage_collector(demo):
    """Each event runs in a request context made from the connection's handshake request.
    That URL used to match no route: every event kept a NotFound whose traceback tied
    the context and about 100 other objects into reference cycles, and collecting them
    paused every client of the process (up to half a second while 2000 clients
    connected and left: bench/connect.py)."""
    alice = demo("alice")
    alice.emit("my_event", {"data": "warm"}, namespace=NS)
    gc.collect()
    gc.disable()  # nothing collected meanwhile: the garbage below is all there was
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for n in range(20):
            alice.emit("my_event", {"data": str(n)}, namespace=NS)
        gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(responses(alice)) == 1 + 1 + 20  # connected, warm, the 20
    # Other threads of the test process may leave cycles meanwhile; no request does.
    left = {kind: kinds[kind] for kind in ("RequestContext", "Request", "NotFound")}
    assert left == {"RequestContext": 0, "Request": 0, "NotFound": 0}
