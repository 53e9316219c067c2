"""Chat across two real server processes on PostgreSQL when their Redis dies or hangs:
nothing is lost, nothing comes twice, and a sender's acknowledgement does not wait."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest
import websocket

from app.auth.tokens import issue_token
from app.chat import store
from tests.test_chat_server import Peer, user_token
from tests.test_cluster import ON_POSTGRES, Socket

pytestmark = [pytest.mark.server, pytest.mark.postgres]
ROOM = "lobby"
CATCH_UP = 5.0  # the contract: within 5 s of the queue's return


class PlainSocket:
    """A ``/ws/chat/<room>`` client that records every frame in a thread of its own."""

    def __init__(self, url: str, username: str, room: str = ROOM) -> None:
        base = url.replace("http://", "ws://")
        self.ws = websocket.create_connection(
            f"{base}/ws/chat/{room}?token={user_token(username)}", timeout=30)
        self.frames: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while (frame := self.ws.recv()):
                self.frames.append(json.loads(frame))
        except (websocket.WebSocketException, OSError):
            pass

    def send(self, text: str) -> None:
        self.ws.send(json.dumps({"text": text, "id": text}))

    def got(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "seq" in f]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def chat_cluster(server_factory, redis_server, app):
    """A private Redis, two server processes on it, and in each a Socket.IO member and a
    plain WebSocket member of ``ROOM``; alice (one) and bob (two) also write privately."""
    redis = redis_server()
    env = {"SOCKETIO_MESSAGE_QUEUE": redis.url(), "SOCKETIO_CHANNEL": f"chat-{os.getpid()}"}
    one, two = server_factory(env), server_factory(env)
    alice, bob = Peer(one.url, "alice"), Peer(two.url, "bob")
    walt, wes = PlainSocket(one.url, "walt"), PlainSocket(two.url, "wes")
    for peer in (alice, bob):
        assert peer.call("join", {"room": ROOM})["ok"]
    wait_for(lambda: len(presence(bob)) == 2 and len(presence(alice)) == 2, 10)
    yield redis, one, two, alice, bob, walt, wes
    for peer in (alice, bob):
        peer.client.disconnect()
    for plain in (walt, wes):
        plain.close()


def presence(peer: Peer) -> set[str]:
    """Who a peer's process says is in the room (its own members: walt or wes, and itself)."""
    seen = [d["users"] for d in peer.got("presence") if d["room"] == ROOM]
    return set(seen[-1]) if seen else set()


def wait_for(check, timeout: float) -> float:
    """Seconds until ``check()`` is true; AssertionError after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return time.monotonic() - start


def room_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages if m.get("room") == ROOM]


def assert_once_in_order(messages: list[dict[str, Any]], expected: set[str], who: str) -> None:
    texts = room_texts(messages)
    assert sorted(texts) == sorted(expected), f"{who}: {texts}"
    seqs = [m["seq"] for m in messages if m.get("room") == ROOM]
    assert seqs == sorted(set(seqs)), f"{who}: seqs {seqs}"


def everyone_has(clients, expected: set[str]) -> bool:
    alice, bob, walt, wes = clients
    return all(set(room_texts(got)) >= expected for got in (
        alice.got("message"), bob.got("message"), walt.got(), wes.got()))


@ON_POSTGRES
def test_a_redis_outage_delays_chat_across_processes_but_loses_none(chat_cluster):
    redis, one, two, alice, bob, walt, wes = chat_cluster
    clients = (alice, bob, walt, wes)
    before = {"a-before", "b-before"}
    alice.call("message", {"room": ROOM, "text": "a-before"})
    bob.call("message", {"room": ROOM, "text": "b-before"})
    wait_for(lambda: everyone_has(clients, before), 5)

    carol = Peer(one.url, "carol")  # writes to bob once, during the outage
    redis.stop()  # kill -9: every process loses its queue
    sent, privates_to_bob, privates_to_alice = set(before), {"from-carol"}, set()
    assert carol.call("private", {"to": "bob", "text": "from-carol"})["ok"]
    carol.client.disconnect()
    for n in range(6):  # 30 s without Redis, both sides writing
        time.sleep(5)
        for who, text in ((alice, f"a{n}"), (bob, f"b{n}")):
            started = time.monotonic()
            assert who.call("message", {"room": ROOM, "text": text})["ok"]
            assert time.monotonic() - started < 1, "the ack waited on the queue"
            sent.add(text)
        walt.send(f"walt{n}")
        wes.send(f"wes{n}")
        sent |= {f"walt{n}", f"wes{n}"}
        assert alice.call("private", {"to": "bob", "text": f"to-bob{n}"})["ok"]
        assert bob.call("private", {"to": "alice", "text": f"to-alice{n}"})["ok"]
        privates_to_bob.add(f"to-bob{n}")
        privates_to_alice.add(f"to-alice{n}")

    redis.start()  # the same port
    back = time.monotonic()
    # Sent at once, while the processes may still be resubscribing.
    alice.call("message", {"room": ROOM, "text": "a-after"})
    bob.call("message", {"room": ROOM, "text": "b-after"})
    sent |= {"a-after", "b-after"}

    def all_arrived() -> bool:
        return everyone_has(clients, sent) and \
            {m["text"] for m in bob.got("private")} >= privates_to_bob and \
            {m["text"] for m in alice.got("private")} >= privates_to_alice

    wait_for(all_arrived, CATCH_UP - (time.monotonic() - back))
    time.sleep(2)  # anything that would come twice comes meanwhile
    for name, got in (("alice", alice.got("message")), ("bob", bob.got("message")),
                      ("walt", walt.got()), ("wes", wes.got())):
        assert_once_in_order(got, sent, name)
    for peer, expected in ((bob, privates_to_bob), (alice, privates_to_alice)):
        texts = [m["text"] for m in peer.got("private")]
        assert sorted(texts) == sorted(expected)
        for sender in {m["user"] for m in peer.got("private")}:  # one conversation each
            seqs = [m["seq"] for m in peer.got("private") if m["user"] == sender]
            assert seqs == sorted(set(seqs)), f"{sender}: {seqs}"

    # Delivered once: a later connection, on either process, is not sent them again.
    time.sleep(0.5)
    for url in (one.url, two.url):
        for name in ("alice", "bob"):
            again = Socket(url, "/chat", token=issue_token(store.user_named(name)))
            time.sleep(1)
            again.close()
            assert [e for e, _ in again.events if e == "private"] == [], f"{name} on {url}"


@ON_POSTGRES
def test_a_hung_redis_neither_slows_acks_nor_duplicates(chat_cluster):
    redis, one, two, alice, bob, walt, wes = chat_cluster
    clients = (alice, bob, walt, wes)
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        sent = set()
        for n in range(8):
            for who, text in ((alice, f"a{n}"), (bob, f"b{n}")):
                started = time.monotonic()
                assert who.call("message", {"room": ROOM, "text": text})["ok"]
                assert time.monotonic() - started < 1, "the ack waited on the hung queue"
                sent.add(text)
            assert alice.call("private", {"to": "bob", "text": f"p{n}"})["ok"]
            time.sleep(0.5)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    back = time.monotonic()
    wait_for(lambda: everyone_has(clients, sent)
             and {m["text"] for m in bob.got("private")} >= {f"p{n}" for n in range(8)},
             CATCH_UP - (time.monotonic() - back))
    time.sleep(3)  # the publishes held up by the hung Redis arrive meanwhile
    for name, got in (("alice", alice.got("message")), ("bob", bob.got("message")),
                      ("walt", walt.got()), ("wes", wes.got())):
        assert_once_in_order(got, sent, name)
    assert sorted(m["text"] for m in bob.got("private")) == sorted(f"p{n}" for n in range(8))
