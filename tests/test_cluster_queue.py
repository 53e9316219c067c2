"""Several processes on one Redis: the channel setting and a Redis that asks for a password
or an ACL user (private redis-server processes, real server processes)."""

from __future__ import annotations

import json
import time

import pytest
import redis
import requests

from app.auth.tokens import issue_token
from tests.test_chat_server import Peer, wait_until
from tests.test_cluster import Socket, wait_for_presence

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


# docs/deploy.md's ACL: the app's user may use its channel and its keys, nothing else.
ACL = ("resetchannels &livecrud resetkeys ~livecrud:* +@connection +publish +subscribe "
       "+unsubscribe +get +set +mget +sadd +srem +smembers")


def test_an_acl_user_limited_to_its_channel_runs_the_cluster(server_factory, redis_server,
                                                             app, make_user):
    server = redis_server("--user", "default", "off",
                          "--user", "livecrud", "on", ">app-pass-123", *ACL.split(),
                          "--user", "intruder", "on", ">other-pass-1", "resetchannels",
                          "&elsewhere", "+@connection", "+publish")
    env = {"SOCKETIO_MESSAGE_QUEUE": server.url("livecrud", "app-pass-123"),
           "SOCKETIO_CHANNEL": "livecrud"}
    one, two = server_factory(env), server_factory(env)
    for process in (one, two):
        assert requests.get(f"{process.url}/readyz", timeout=5).json() == {"status": "ok"}
    assert crosses(one, two, "acl")
    ann, ben = make_user("ann"), make_user("ben")
    viewer = Socket(one.url, "/users", token=issue_token(ann))
    remote = Socket(two.url, "/users", token=issue_token(ben))
    try:
        viewer.call("subscribe", {"since": None})
        remote.call("subscribe", {"since": None})
        wait_for_presence(viewer, {"viewers": ["ann", "ben"], "editing": {}}, 5)

        # Whoever holds the app's Redis credentials can emit anything to every client...
        forged = {"method": "emit", "event": "change", "data": [{"forged": True}],
                  "namespace": "/users", "room": None, "skip_sid": None,
                  "callback": None, "host_id": "someone"}
        app_user = redis.Redis.from_url(env["SOCKETIO_MESSAGE_QUEUE"])
        assert app_user.publish("livecrud", json.dumps(forged)) == 2
        for sock in (viewer, remote):
            wait_until(lambda s=sock: ("change", {"forged": True}) in s.events)
        # ...another Redis user cannot, nor can anyone without a password.
        intruder = redis.Redis.from_url(server.url("intruder", "other-pass-1"))
        with pytest.raises(redis.exceptions.NoPermissionError):
            intruder.publish("livecrud", json.dumps(forged))
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(server.url()).publish("livecrud", "{}")
    finally:
        viewer.close()
        remote.close()
