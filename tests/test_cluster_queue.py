"""Several processes on one Redis: the channel setting and a Redis that asks for a password
or an ACL user (private redis-server processes, real server processes)."""

from __future__ import annotations

import time

import pytest
import redis
import requests

from tests.test_chat_server import Peer

pytestmark = pytest.mark.server


def crosses(one, two, room: str) -> bool:
    """Whether a chat message sent on ``two`` reaches a member of ``room`` on ``one``."""
    alice, bob = Peer(one.url, f"a_{room}"), Peer(two.url, f"b_{room}")
    try:
        alice.call("join", {"room": room})
        bob.call("join", {"room": room})
        bob.call("message", {"room": room, "text": "across"})
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if any(m["text"] == "across" for m in alice.got("message")):
                return True
            time.sleep(0.05)
        return False
    finally:
        alice.client.disconnect()
        bob.client.disconnect()


def test_processes_share_a_channel_and_only_that_channel(server_factory, redis_server, app):
    url = redis_server().url()
    red = {"SOCKETIO_MESSAGE_QUEUE": url, "SOCKETIO_CHANNEL": "site-red"}
    blue = {"SOCKETIO_MESSAGE_QUEUE": url, "SOCKETIO_CHANNEL": "site-blue"}
    red1, red2, blue1 = server_factory(red), server_factory(red), server_factory(blue)
    assert crosses(red1, red2, "same")
    assert not crosses(red1, blue1, "other")  # another site on the same Redis


def test_a_redis_with_requirepass(server_factory, redis_server, app):
    server = redis_server("--requirepass", "s3cret-pass")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(server.url()).ping()
    env = {"SOCKETIO_MESSAGE_QUEUE": server.url(password="s3cret-pass")}
    one, two = server_factory(env), server_factory(env)
    for process in (one, two):
        assert requests.get(f"{process.url}/readyz", timeout=5).json() == {"status": "ok"}
    assert crosses(one, two, "guarded")

    wrong = server_factory({"SOCKETIO_MESSAGE_QUEUE": server.url(password="guess")})
    answer = requests.get(f"{wrong.url}/readyz", timeout=5)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "message queue: AuthenticationError"
