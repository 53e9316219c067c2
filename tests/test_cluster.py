"""Two real server processes on one PostgreSQL database and a private Redis: what a user
of one process sees of the other (logout, presence)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
import requests
import socketio

from app.auth.tokens import issue_token
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.server, pytest.mark.postgres]
ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def csrf(html: str) -> str:
    return html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0] \
        if 'name="csrf-token"' in html else \
        html.split('name="csrf_token"', 1)[1].split('value="', 1)[1].split('"', 1)[0]


def browser_session(base: str, username: str) -> requests.Session:
    """Logged in through the login form, as a browser is."""
    http = requests.Session()
    page = http.get(f"{base}/login", timeout=10).text
    answer = http.post(f"{base}/login", timeout=10, data={
        "username": username, "password": PASSWORD, "csrf_token": csrf(page)})
    assert answer.status_code == 200 and "/login" not in answer.url, answer.text[:300]
    return http


class Socket:
    """A python-socketio client of one namespace that records when it was closed."""

    def __init__(self, url: str, namespace: str, *, cookie: str | None = None,
                 token: str | None = None) -> None:
        self.namespace = namespace
        self.closed = threading.Event()
        self.closed_at = 0.0
        self.events: list[tuple[str, Any]] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("disconnect", self._closed, namespace=namespace)
        self.client.on("*", lambda event, data=None: self.events.append((event, data)),
                       namespace=namespace)
        self.client.connect(url, namespaces=[namespace], transports=["websocket"],
                            headers={"Cookie": f"session={cookie}"} if cookie else {},
                            auth={"token": token} if token else None, wait_timeout=10)

    def _closed(self, reason: Any = None) -> None:
        self.closed_at = time.monotonic()
        self.closed.set()

    def call(self, event: str, data: Any = None) -> Any:
        return self.client.call(event, data, namespace=self.namespace, timeout=10)

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def cluster(server_factory, queue_env):
    """Two server processes sharing the database and a private Redis."""
    return server_factory(queue_env), server_factory(queue_env)


@ON_POSTGRES
def test_logout_on_one_process_closes_that_sessions_sockets_on_the_other(cluster, make_user):
    """Only that session's: the same user's other browser and API token go on."""
    one, two = cluster
    carol = make_user("carol")
    dave = make_user("dave")
    http = browser_session(one.url, "carol")
    cookie = http.cookies["session"]
    theirs = [Socket(two.url, "/users", cookie=cookie), Socket(two.url, "/chat", cookie=cookie),
              Socket(one.url, "/users", cookie=cookie)]
    other_browser = browser_session(two.url, "carol")
    staying = [Socket(two.url, "/users", cookie=other_browser.cookies["session"]),
               Socket(two.url, "/chat", token=issue_token(carol)),
               Socket(two.url, "/users", token=issue_token(dave))]
    try:
        page = http.get(f"{one.url}/", timeout=10).text
        assert http.post(f"{one.url}/logout", data={"csrf_token": csrf(page)},
                         timeout=10).status_code == 200
        logged_out = time.monotonic()
        for sock in theirs:
            assert sock.closed.wait(3), f"{sock.namespace} socket still open after 3 s"
            assert sock.closed_at - logged_out < 3
        time.sleep(1.5)  # a sweep (SESSION_SWEEP_SECONDS) has passed on both processes
        for sock in staying:
            assert sock.client.connected, f"{sock.namespace} socket closed"
        assert staying[0].call("latency") == {"ok": True}
        page = other_browser.get(f"{two.url}/", timeout=10)
        assert page.status_code == 200 and "/login" not in page.url  # still logged in
    finally:
        for sock in [*theirs, *staying]:
            sock.close()


@ON_POSTGRES
def test_logout_closes_the_sessions_sockets_on_the_other_process_while_redis_is_down(
        server_factory, redis_server, make_user):
    """The queue's notice is lost while Redis is down: each process's sweep of the
    database closes the sockets of the ended session all the same."""
    redis = redis_server()
    env = {"SOCKETIO_MESSAGE_QUEUE": redis.url(), "SOCKETIO_CHANNEL": "logout-outage"}
    one, two = server_factory(env), server_factory(env)
    make_user("carol")
    http = browser_session(one.url, "carol")
    theirs = [Socket(two.url, ns, cookie=http.cookies["session"]) for ns in ("/users", "/chat")]
    try:
        redis.stop()
        page = http.get(f"{one.url}/", timeout=10).text
        assert http.post(f"{one.url}/logout", data={"csrf_token": csrf(page)},
                         timeout=10).status_code == 200
        for sock in theirs:
            assert sock.closed.wait(3), f"{sock.namespace} socket still open after 3 s"
    finally:
        for sock in theirs:
            sock.close()


@ON_POSTGRES
@pytest.mark.parametrize("redis_up", [True, False], ids=["queue", "redis-down"])
def test_deactivating_a_user_closes_their_connections_on_every_process(
        server_factory, redis_server, make_user, admin, redis_up):
    """Through the queue at once; while Redis is down, each process's feed sees the
    change in the database and closes them all the same."""
    redis = redis_server()
    env = {"SOCKETIO_MESSAGE_QUEUE": redis.url(), "SOCKETIO_CHANNEL": "deactivation"}
    one, two = server_factory(env), server_factory(env)
    carol, dave = make_user("carol"), make_user("dave")
    token, cookie = issue_token(carol), browser_session(two.url, "carol").cookies["session"]
    theirs = [Socket(two.url, "/users", token=token), Socket(two.url, "/chat", cookie=cookie),
              Socket(one.url, "/users", token=token), Socket(one.url, "/chat", token=token)]
    bystander = Socket(two.url, "/users", token=issue_token(dave))
    try:
        if not redis_up:
            redis.stop()
        answer = requests.patch(f"{one.url}/api/users/{carol.id}", timeout=10,
                                json={"active": False, "version": carol.version},
                                headers={"Authorization": f"Bearer {issue_token(admin)}"})
        assert answer.status_code == 200 and answer.json()["active"] is False
        deactivated = time.monotonic()
        for sock in theirs:
            assert sock.closed.wait(3), f"{sock.namespace} socket still open after 3 s"
            assert sock.closed_at - deactivated < 3
        assert bystander.call("latency") == {"ok": True}
    finally:
        for sock in [*theirs, bystander]:
            sock.close()


def presences(sock: Socket) -> list[Any]:
    return [data for event, data in sock.events if event == "presence"]


def wait_for_presence(sock: Socket, expected: dict[str, Any], timeout: float) -> float:
    """Seconds until ``sock`` was sent ``expected`` as its latest presence."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if presences(sock) and presences(sock)[-1] == expected:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"presence {expected} not seen; last: {presences(sock)[-1:]}")


@ON_POSTGRES
def test_presence_lists_every_processes_viewers_and_a_dead_process_drops_out(cluster,
                                                                            make_user):
    one, two = cluster
    ann, ben = make_user("ann"), make_user("ben")
    viewer = Socket(one.url, "/users", token=issue_token(ann))
    remote = [Socket(two.url, "/users", token=issue_token(ben)) for _ in range(2)]
    try:
        viewer.call("subscribe", {"since": None})
        wait_for_presence(viewer, {"viewers": ["ann"], "editing": {}}, 5)
        remote[0].call("subscribe", {"since": None})
        wait_for_presence(viewer, {"viewers": ["ann", "ben"], "editing": {}}, 5)
        assert remote[1].call("watch", {"id": ann.id})["row"]["username"] == "ann"
        both = {"viewers": ["ann", "ben"], "editing": {str(ann.id): ["ben"]}}
        wait_for_presence(viewer, both, 5)
        wait_for_presence(remote[0], both, 5)  # B lists A's viewer too

        two.proc.kill()  # kill -9: B never says goodbye
        two.proc.wait()
        wait_for_presence(viewer, {"viewers": ["ann"], "editing": {}}, 30)
        seen = presences(viewer)
        # Sent only when it changes: the refreshes in between sent nothing.
        assert all(a != b for a, b in itertools.pairwise(seen)), seen
    finally:
        for sock in [viewer, *remote]:
            sock.close()


@ON_POSTGRES
def test_a_private_message_to_another_process_is_delivered_once(cluster, make_user):
    one, two = cluster
    alice, bob = make_user("alice"), make_user("bob")
    sender = Socket(one.url, "/chat", token=issue_token(alice))
    recipient = Socket(two.url, "/chat", token=issue_token(bob))
    try:
        assert sender.call("private", {"to": "bob", "text": "over there"})["ok"]
        deadline = time.monotonic() + 5
        while not any(e == "private" for e, _ in recipient.events):
            assert time.monotonic() < deadline, "the private message never arrived"
            time.sleep(0.05)
        time.sleep(0.5)  # B marks it delivered meanwhile
        recipient.close()
        for url in (two.url, one.url):  # bob's next connection, on either process
            again = Socket(url, "/chat", token=issue_token(bob))
            time.sleep(1)  # a replay is sent on connect
            again.close()
            assert [d for e, d in again.events if e == "private"] == []
    finally:
        sender.close()
        recipient.close()


@ON_POSTGRES
def test_the_playgrounds_server_event_comes_once_per_interval(server_factory, queue_env,
                                                             make_user):
    env = {**queue_env, "DEMO_TICK_SECONDS": "0.3"}
    one, two = server_factory(env), server_factory(env)
    dora = make_user("dora")
    demos = [Socket(url, "/demo", token=issue_token(dora)) for url in (one.url, two.url)]
    try:
        time.sleep(3)
        for sock in demos:
            counts = [d["count"] for e, d in sock.events
                      if e == "my_response" and d.get("data") == "Server generated event"]
            assert len(counts) >= 3
            # One process's ticks, in order; another process's would repeat the counts.
            assert counts == sorted(set(counts)), counts
    finally:
        for sock in demos:
            sock.close()
