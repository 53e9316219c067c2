"""/chat and /demo on a real gevent server (``manage.py run``) with python-socketio clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import socketio

from app.auth.tokens import issue_token
from app.extensions import db
from app.models import User

pytestmark = pytest.mark.server
TIMEOUT = 5.0


def user_token(username: str) -> str:
    """A new user (no password: it connects with the token) and a token, in the test's DB."""
    user = User(username=username, email=f"{username}@example.com")
    db.session.add(user)
    db.session.commit()
    return issue_token(user)


def wait_until(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


class Peer:
    """A python-socketio client that records every event of one namespace."""

    def __init__(self, url: str, username: str, namespace: str = "/chat") -> None:
        self.namespace = namespace
        self.events: list[tuple[str, Any]] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._record, namespace=namespace)
        self.client.connect(url, namespaces=[namespace], auth={"token": user_token(username)},
                            transports=["websocket"], wait_timeout=TIMEOUT)

    def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    def call(self, event: str, data: Any = None) -> Any:
        return self.client.call(event, data, namespace=self.namespace, timeout=TIMEOUT)

    def wait_for(self, event: str, data: Any = None) -> Any:
        """Wait for an event (with this payload, when given); its payload."""
        return wait_until(lambda: next(
            (d for e, d in self.events if e == event and (data is None or d == data)), None))

    def got(self, event: str) -> list[Any]:
        return [d for e, d in self.events if e == event]


@pytest.fixture
def peers(app, live_server) -> Callable[..., Peer]:
    """Clients of the live server; users and tokens are made in the test's app context."""
    opened: list[Peer] = []

    def open_peer(username: str, namespace: str = "/chat", url: str | None = None) -> Peer:
        peer = Peer(url or live_server.url, username, namespace)
        opened.append(peer)
        return peer

    yield open_peer
    for peer in opened:
        peer.client.disconnect()


def test_rooms_presence_and_private_messages(peers):
    alice, bob, carol = peers("alice"), peers("bob"), peers("carol")
    assert alice.call("join", {"room": "lobby"})["users"] == ["alice"]
    assert bob.call("join", {"room": "lobby"})["users"] == ["alice", "bob"]
    alice.wait_for("status", {"room": "lobby", "text": "bob joined"})
    alice.wait_for("presence", {"room": "lobby", "users": ["alice", "bob"]})

    sent = bob.call("message", {"room": "lobby", "text": "hi all", "id": "b1"})["message"]
    assert alice.wait_for("message")["id"] == sent["id"]
    assert bob.call("message", {"room": "lobby", "text": "hi all", "id": "b1"})["duplicate"]

    assert alice.call("private", {"to": "bob", "text": "just you"})["ok"]
    assert bob.wait_for("private")["text"] == "just you"
    assert alice.call("private", {"to": "carol", "text": "and you"})["ok"]
    assert [m["text"] for m in [carol.wait_for("private")]] == ["and you"]
    assert len(carol.got("private")) == 1 and carol.got("message") == []
    answer = alice.call("private", {"to": "nobody", "text": "?"})
    assert answer == {"error": "unknown user 'nobody'"}

    bob.client.disconnect()
    alice.wait_for("status", {"room": "lobby", "text": "bob left"})
    alice.wait_for("presence", {"room": "lobby", "users": ["alice"]})
    assert len(alice.got("message")) == 1  # the retried "b1" was delivered once


def test_demo_disconnects_once_the_client_acknowledged(peers):
    demo = peers("dora", "/demo")
    demo.wait_for("my_response", {"data": "Connected", "count": 0})
    demo.client.on("my_response", lambda data: True, namespace="/demo")  # acknowledges
    demo.client.emit("disconnect_request", namespace="/demo")
    wait_until(lambda: not demo.client.connected)


def test_two_processes_share_rooms_through_the_message_queue(server_factory, queue_env, app):
    one, two = server_factory(queue_env), server_factory(queue_env)
    alice, bob = Peer(one.url, "alice"), Peer(two.url, "bob")
    try:
        alice.call("join", {"room": "shared"})
        bob.call("join", {"room": "shared"})
        alice.wait_for("status", {"room": "shared", "text": "bob joined"})
        bob.call("message", {"room": "shared", "text": "across"})
        assert alice.wait_for("message")["text"] == "across"
        alice.call("private", {"to": "bob", "text": "over there"})
        assert bob.wait_for("private")["text"] == "over there"
    finally:
        alice.client.disconnect()
        bob.client.disconnect()
