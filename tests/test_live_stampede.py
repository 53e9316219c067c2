"""The live feed of a real gevent server on PostgreSQL: a connection stampede on a fresh
process, the database going away under the follower, NOTIFY waking it, and
notifications lost on the way."""

from __future__ import annotations

import socket
import struct
import threading
import time

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.auth.tokens import issue_token
from tests.live_client import LiveClient
from tests.servers import Proxy

pytestmark = pytest.mark.server
ON_POSTGRES = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
CLIENTS = 50


def plain_url(db_url: str, database: str | None = None) -> str:
    url = make_url(db_url).set(drivername="postgresql")
    if database:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def sql(db_url: str, statement: str, database: str | None = None) -> None:
    """Run one statement as a program outside the app (autocommit)."""
    with psycopg.connect(plain_url(db_url, database), autocommit=True) as conn:
        conn.execute(statement)


@ON_POSTGRES
def test_fifty_simultaneous_connects_to_a_fresh_process_are_served(server_factory, db_url,
                                                                   admin):
    token = issue_token(admin)
    server = server_factory()  # fresh: nothing connected yet, the feed just started
    clients = [LiveClient(server.url, token) for _ in range(CLIENTS)]
    failures: list[BaseException] = []
    go = threading.Barrier(CLIENTS)

    def connect_and_subscribe(client: LiveClient) -> None:
        try:
            go.wait()
            client.connect()
            client.subscribe(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=connect_and_subscribe, args=(c,)) for c in clients]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        took = time.monotonic() - started
        assert not failures, failures[:3]
        assert took < 30, f"{CLIENTS} connects took {took:.1f} s"  # the old pool timeout

        sql(db_url, "UPDATE users SET email = 'stampede@example.com' WHERE username = 'admin'")
        changed = time.monotonic()
        for client in clients:
            [change] = client.wait_for(1, timeout=10)
            assert change["row"]["email"] == "stampede@example.com"
        assert time.monotonic() - changed < 3, "the change reached the last client late"
    finally:
        for client in clients:
            client.close()


@ON_POSTGRES
def test_the_follower_survives_the_database_going_away(server_factory, db_url, admin):
    """The database refuses connections for a few seconds (its sessions killed): the
    follower logs that once, retries with backoff, and pushes what comes after."""
    server = server_factory()
    client = LiveClient(server.url, issue_token(admin)).connect()
    database = make_url(db_url).database
    try:
        client.subscribe(None)
        sql(db_url, "UPDATE users SET email = 'before@example.com' WHERE username = 'admin'")
        client.wait_for(1)
        before = len(server.log.read_text().splitlines())

        sql(db_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS false", "postgres")
        sql(db_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid()", "postgres")
        time.sleep(6)
        sql(db_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS true", "postgres")

        sql(db_url, "UPDATE users SET email = 'after@example.com' WHERE username = 'admin'")
        changes = client.wait_for(2, timeout=20)
        assert changes[-1]["row"]["email"] == "after@example.com"
        deadline = time.monotonic() + 10  # the follower logs after it has sent
        while "live feed: resumed" not in (text := server.log.read_text()):
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.1)
        outage = text.splitlines()[before:]
        for said_once in ("live feed: poll failed", "live feed: resumed",
                          "live feed: LISTEN connection lost", "live feed: LISTEN connection back"):
            assert sum(line.startswith(said_once) for line in outage) == 1, (said_once, outage)
        assert len(outage) <= 6, outage  # no traceback, no line per retry
    finally:
        sql(db_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS true", "postgres")
        client.close()


def quiet_seconds(db_url: str) -> float:
    """Seconds since the last statement on the test's database by anyone but the
    follower's LISTEN connection and this one (no one else connected: forever)."""
    with psycopg.connect(plain_url(db_url), autocommit=True) as conn:
        [age] = conn.execute(
            "SELECT EXTRACT(EPOCH FROM now() - max(state_change)) "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query <> 'LISTEN user_changes'").fetchone()
    return float("inf") if age is None else float(age)


@ON_POSTGRES
def test_notify_wakes_the_follower_which_otherwise_leaves_the_database_alone(
        server_factory, db_url, admin):
    """While its LISTEN connection is up, an idle process does not poll the change log
    (here: every 30 s), yet a change by plain SQL reaches the subscriber at once; while
    that connection is cut and cannot come back, the feed polls and the change made
    meanwhile arrives all the same."""
    server = server_factory({"LIVE_LISTEN_POLL_INTERVAL": "30", "SESSION_SWEEP_SECONDS": "30"})
    client = LiveClient(server.url, issue_token(admin)).connect()
    database = make_url(db_url).database
    writer = psycopg.connect(plain_url(db_url), autocommit=True)
    try:
        client.subscribe(None)
        deadline, quiet = time.monotonic() + 8, 0.0
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            quiet = quiet_seconds(db_url)
        assert quiet >= 2, "the follower kept querying the database"

        sql(db_url, "UPDATE users SET email = 'notified@example.com' WHERE username = 'admin'")
        [change] = client.wait_for(1, timeout=10)
        assert change["row"]["email"] == "notified@example.com"

        sql(db_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS false", "postgres")
        sql(db_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE query = 'LISTEN user_changes' AND datname = '{database}'",
            "postgres")
        deadline = time.monotonic() + 10  # no NOTIFY can wake the follower from here on
        while "live feed: LISTEN connection lost" not in server.log.read_text():
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.05)
        writer.execute("UPDATE users SET email = 'unheard@example.com' "
                       "WHERE username = 'admin'")
        changes = client.wait_for(2, timeout=10)
        assert changes[-1]["row"]["email"] == "unheard@example.com"
    finally:
        sql(db_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS true", "postgres")
        writer.close()
        client.close()


class NotificationDroppingProxy(Proxy):
    """A relay to the test's PostgreSQL that passes everything but the server's
    notifications, as a transaction-pooling proxy loses them: the LISTEN connection
    lives, and no NOTIFY ever reaches it. ``url``: the test's database through it."""

    def __init__(self, db_url: str) -> None:
        target = make_url(db_url)
        super().__init__((target.host or "127.0.0.1", target.port or 5432))
        self.url = target.set(host="127.0.0.1", port=self.port,
                              query={"sslmode": "disable"}  # the relay reads the messages
                              ).render_as_string(hide_password=False)

    def _pump_back(self, server: socket.socket, client: socket.socket) -> None:
        """Message by message (a type byte and a length), without NotificationResponse
        ('A')."""
        buffer = b""
        try:
            while data := server.recv(65536):
                buffer += data
                while len(buffer) >= 5:
                    end = 1 + struct.unpack("!i", buffer[1:5])[0]
                    if len(buffer) < end:
                        break
                    if buffer[:1] != b"A":
                        client.sendall(buffer[:end])
                    buffer = buffer[end:]
        except OSError:
            pass


@ON_POSTGRES
def test_notifications_lost_on_the_way_are_noticed_and_the_feed_polls(server_factory,
                                                                      db_url, admin):
    """Behind a proxy that drops notifications, changes by other programs still come
    with the backup poll; after two of those (a third, should anything else have woken
    the follower meanwhile) it says so in its log and polls every LIVE_POLL_INTERVAL
    (here the backup poll comes every 3 s)."""
    proxy = NotificationDroppingProxy(db_url)
    server = server_factory({"DATABASE_URL": proxy.url, "LIVE_LISTEN_POLL_INTERVAL": "3",
                             "SESSION_SWEEP_SECONDS": "3"})
    client = LiveClient(server.url, issue_token(admin)).connect()
    try:
        client.subscribe(None)
        noticed = "live feed: changes keep coming without NOTIFY"
        unheard = 0
        while noticed not in server.log.read_text():
            unheard += 1
            assert unheard <= 3, server.log.read_text()[-3000:]
            sql(db_url, f"UPDATE users SET email = 'unheard{unheard}@example.com' "
                        "WHERE username = 'admin'")
            client.wait_for(unheard, timeout=10)
            time.sleep(0.2)  # the log line follows the change
        for n in range(unheard + 1, unheard + 5):  # with the 3 s poll, 4 within 1 s: 1 in 81
            sql(db_url, f"UPDATE users SET email = 'polled{n}@example.com' "
                        "WHERE username = 'admin'")
            written = time.monotonic()
            assert client.wait_for(n, timeout=10)[-1]["row"]["email"] == f"polled{n}@example.com"
            assert time.monotonic() - written < 1, f"change {n} waited for the backup poll"
    finally:
        client.close()
        proxy.down()
