"""Faults of a cluster, for real: two gunicorn processes (deploy/entrypoint.sh) behind
Debian's nginx (deploy/nginx.conf) on PostgreSQL and a private Redis, live-table clients
going through nginx and resuming from their cursor as the dashboard does. Whatever
fails (a process killed, Redis or PostgreSQL down, a rolling restart), every client sees
every change of the log exactly once and in cursor order."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import requests
import socketio

from app.auth.tokens import issue_token
from tests.cluster_helpers import (
    Cluster,
    Writer,
    api_create,
    assert_every_change_once,
    bearer,
)
from tests.conftest import unavailable
from tests.live_client import ResumingClient
from tests.servers import EntrypointProcess, PostgresServer, ServerProcess
from tests.test_chat_server import wait_until

pytestmark = [pytest.mark.server, pytest.mark.postgres]
ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def clients(url: str, token: str, count: int, name: str) -> list[ResumingClient]:
    """``count`` clients, subscribed; the first on polling then WebSocket, as browsers
    connect (every request of its session must reach the same process), the others on
    WebSocket only."""
    return [ResumingClient(url, token, f"{name}{n}",
                           ("polling", "websocket") if n == 0 else ("websocket",)).open()
            for n in range(count)]


def close(every: list[ResumingClient]) -> None:
    for client in every:
        client.close()


def delivered(base: str, token: str, username: str, to: list[ResumingClient]) -> float:
    """Create a user through ``base``; seconds from the answer until every client of
    ``to`` got it."""
    answer = api_create(base, token, username)
    sent = time.monotonic()
    assert answer.status_code == 201, answer.text
    # The API answers the user; its history says which cursor its insert got.
    history = requests.get(f"{base}/api/users/{answer.json()['id']}/history",
                           headers=bearer(token), timeout=10).json()["items"]
    cursor = history[-1]["cursor"]
    return max(max(client.wait_for_cursor(cursor, 5) for client in to) - sent, 0)


def ready(process: EntrypointProcess) -> tuple[int, dict]:
    answer = requests.get(f"{process.url}/readyz", timeout=10)
    return answer.status_code, answer.json()


@pytest.fixture
def admin_token(make_user) -> str:
    return issue_token(make_user("admin", role="admin"))


@pytest.fixture
def cluster(db_url: str, queue_env: dict[str, str], nginx_cluster) -> Cluster:
    """The database and Redis are set up first, so that they go last."""
    return nginx_cluster(db_url, queue_env)


@ON_POSTGRES
def test_kill_9_of_a_process_its_clients_resume_on_the_survivor(cluster, admin_token,
                                                                db_url):
    doomed, survivor = cluster.split()
    moved = clients(cluster.nginx.url, admin_token, 3, "nginx")  # all on `doomed`
    stayed = clients(survivor.url, admin_token, 1, "survivor")
    writer = Writer(survivor.url, admin_token).start()
    try:
        wait_until(lambda: writer.written() >= 10)
        doomed.proc.kill()  # kill -9: no goodbye to its clients
        doomed.proc.wait()
        assert api_create(survivor.url, admin_token, "while_away").status_code == 201
        wait_until(lambda: all(c.connections >= 2 and c.subscribed.is_set() for c in moved),
                   timeout=15)
        assert cluster.nginx.upstream() == survivor.upstream
        after = writer.written()
        wait_until(lambda: writer.written() >= after + 10)  # written after the resume
        writer.stop()
        assert_every_change_once(moved + stayed, db_url)
        assert any(c.replayed for c in moved)  # they did resume from their cursor
        assert set(writer.statuses) <= {200, 201}, writer.statuses
    finally:
        writer.stop()
        close(moved + stayed)


REDIS_OUTAGE = 30  # seconds


@ON_POSTGRES
def test_redis_down_30_s_the_live_table_goes_on_across_processes(db_url, redis_server,
                                                                nginx_cluster, admin_token):
    redis = redis_server()
    cluster = nginx_cluster(db_url, {"SOCKETIO_MESSAGE_QUEUE": redis.url()})
    first, second = cluster.split()
    on_first = clients(cluster.nginx.url, admin_token, 2, "nginx")  # nginx sends them to `first`
    on_second = clients(second.url, admin_token, 2, "second")
    try:
        assert delivered(first.url, admin_token, "before_1", on_second) < 1
        redis.stop()
        down = time.monotonic()
        latencies = []
        n = 0
        while time.monotonic() - down < REDIS_OUTAGE:
            for process in (first, second):
                status, body = ready(process)
                assert status == 503 and body["reason"].startswith("message queue"), body
            # Written through each process, seen by the other process's clients.
            latencies.append(delivered(first.url, admin_token, f"outage_a{n}", on_second))
            latencies.append(delivered(second.url, admin_token, f"outage_b{n}", on_first))
            n += 1
            time.sleep(2)
        assert max(latencies) < 1, latencies
        redis.start()  # on the same port
        wait_until(lambda: all(ready(p)[0] == 200 for p in (first, second)), timeout=10)
        assert delivered(second.url, admin_token, "after_b", on_first) < 1
        assert delivered(first.url, admin_token, "after_a", on_second) < 1
        assert_every_change_once(on_first + on_second, db_url)
    finally:
        close(on_first + on_second)


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which it may stop (never the shared one)."""
    if PostgresServer.BIN is None:
        unavailable("this test needs Debian's PostgreSQL server (/usr/lib/postgresql/*/bin: "
                    "apt-get install postgresql)")
    server = PostgresServer()
    try:
        yield server.init()
    finally:
        server.remove()


def answers_during_outage(base: str, token: str) -> list[int]:
    """The statuses of a read, a write and /readyz; each must come within 5 s."""
    statuses = []
    for method, path, body in [("GET", "/api/users", None),
                               ("POST", "/api/users", {"username": "nobody", "password": "x",
                                                       "email": "nobody@example.com"}),
                               ("GET", "/readyz", None)]:
        sent = time.monotonic()
        answer = requests.request(method, base + path, json=body, headers=bearer(token),
                                  timeout=10)
        assert time.monotonic() - sent < 5, f"{method} {path} took over 5 s"
        assert answer.headers.get("Retry-After"), f"{method} {path}: no Retry-After"
        assert answer.headers["Content-Type"].startswith("application/json")
        statuses.append(answer.status_code)
    return statuses


def refusal(base: str, token: str) -> str:
    """Why a new ``/users`` connection is refused ("": it was accepted)."""
    reasons: list[str] = []
    sio = socketio.Client(reconnection=False)
    sio.on("connect_error", lambda data=None: reasons.append(str((data or {}).get("message"))),
           namespace="/users")
    try:
        sio.connect(base, namespaces=["/users"], transports=["websocket"],
                    auth={"token": token}, wait_timeout=10)
    except socketio.exceptions.ConnectionError:
        pass
    finally:
        sio.disconnect()
    return reasons[0] if reasons else ""


def test_postgresql_restarted_every_feed_resumes_and_nothing_is_lost(
        private_postgres, queue_env, nginx_cluster, tmp_path):
    private_postgres.execute("CREATE DATABASE livecrud")
    db_url = private_postgres.url("livecrud")
    cli = ServerProcess(db_url, tmp_path / "cli")
    cli.flask("db", "upgrade")
    cli.flask("users", "create", "admin", "--email", "admin@example.com",
              "--password", "long-enough-pw", "--admin")
    token = cli.flask("tokens", "issue", "admin").stdout.strip()
    cluster = nginx_cluster(db_url, queue_env)
    first, second = cluster.split()
    on_first = clients(cluster.nginx.url, token, 2, "nginx")  # nginx sends them to `first`
    on_second = clients(second.url, token, 1, "second")
    everyone = on_first + on_second
    try:
        for n in range(3):
            assert api_create(cluster.nginx.url, token, f"before_a{n}").status_code == 201
            assert api_create(second.url, token, f"before_b{n}").status_code == 201
        private_postgres.stop()
        for base in (cluster.nginx.url, first.url, second.url):
            assert answers_during_outage(base, token) == [503, 503, 503], base
        # A new connection is refused for now, saying so (the pages try again later).
        assert refusal(second.url, token).startswith("unavailable: the database"), "refusal"
        time.sleep(3)
        private_postgres.start()
        # The first requests may still find the pool's dead connections: 503, then 201.
        wait_until(lambda: api_create(first.url, token, "back_a").status_code == 201, timeout=15)
        wait_until(lambda: api_create(second.url, token, "back_b").status_code == 201,
                   timeout=15)
        for n in range(3):
            assert api_create(cluster.nginx.url, token, f"after_a{n}").status_code == 201
            assert api_create(second.url, token, f"after_b{n}").status_code == 201
        assert refusal(second.url, token) == ""
        log = assert_every_change_once(everyone, db_url)
        assert len(log) == 1 + 6 + 2 + 6  # the admin, before, back, after
        assert all(c.connections == 1 for c in everyone)  # the sockets stayed up
    finally:
        close(everyone)


def sigterm_and_start_again(process: EntrypointProcess) -> None:
    """A rolling restart's step: SIGTERM, wait for the exit (0), start on the same port."""
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(15) == 0
    process.start()
    wait_until(lambda: ready(process)[0] == 200, timeout=15)


@ON_POSTGRES
def test_a_rolling_restart_loses_no_change(cluster, admin_token, db_url):
    first, second = cluster.split()
    through_nginx = clients(cluster.nginx.url, admin_token, 3, "nginx")
    # The writer goes through nginx too: its requests move with the clients.
    writer = Writer(cluster.nginx.url, admin_token).start()
    try:
        for process, hops in ((first, 2), (second, 3)):
            wait_until(lambda: writer.written() >= 10)
            sigterm_and_start_again(process)
            if process is first:
                # nginx tries a failed process again only after deploy/nginx.conf's
                # fail_timeout: the next one may go once nginx sends clients back here.
                wait_until(lambda: cluster.nginx.upstream() == first.upstream, timeout=20)
            # Moved to the other process meanwhile (nginx's ip_hash skips a dead one).
            wait_until(lambda hops=hops: all(c.connections >= hops and c.subscribed.is_set()
                                             for c in through_nginx), timeout=15)
            writes = writer.written()
            wait_until(lambda writes=writes: writer.written() >= writes + 10)
        writer.stop()
        assert_every_change_once(through_nginx, db_url)
        assert any(c.replayed for c in through_nginx)
        assert set(writer.statuses) <= {200, 201}, writer.statuses
    finally:
        writer.stop()
        close(through_nginx)
