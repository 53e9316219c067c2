"""Bulk-write benchmark of the live views: one plain-SQL statement over many rows.

Seeds ``--users`` users into a fresh SQLite database (or the fresh PostgreSQL database
``--database-url``), starts ``python manage.py run`` (one gevent process), connects
``--clients`` python-socketio clients spread over ten live views, and a probe that
times a ``latency`` round trip every 20 ms. Then another program (sqlite3, or psycopg)
commits one statement:

- ``--write update``: ``UPDATE users SET active = NOT active`` over every seeded row;
- ``--write import``: ``INSERT`` of ``--rows`` new users.

It checks that every client's page ends as ``GET /api/users`` answers for its view and
reports how long after the writing program ended the last client's last event arrived
(negative: before it ended; a program that wrote many rows spends a while after its
commit checkpointing the WAL as it closes), the bytes each
client received, the server's RSS growth, and the probe's slowest round trip during the
write.

    .venv/bin/python bench/bulk.py --users 100000 --clients 100 --write update
    .venv/bin/python bench/bulk.py --users 1000 --clients 10 --write import --rows 900000
    .venv/bin/python bench/bulk.py --database-url postgresql://postgres@127.0.0.1/bulk
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import PY, Server, free_port, rss_kb, seed_users, setup_livecrud  # noqa: E402

NS = "/users"
VIEWS = [
    {"sort": "username"}, {"sort": "username", "page": 2}, {"sort": "username", "page": 500},
    {"sort": "-updated_at"}, {"q": "m0001"}, {"q": "9@EXAMPLE"}, {"active": True},
    {"active": False, "sort": "email"}, {"role": "user", "sort": "-id", "page": 3},
    {"sort": "created_at,-username", "per_page": 50},
]

# i with at least 5 (7) digits, zero-padded: lpad alone would cut longer numbers.
PADDED5 = "lpad(i::text, greatest(5, length(i::text)), '0')"
PADDED7 = "lpad(i::text, greatest(7, length(i::text)), '0')"


class Follower:
    """One client of one view; counts the bytes of its ``view`` events."""

    def __init__(self, url: str, token: str, view: dict[str, Any]) -> None:
        self.bytes = 0
        self.last_event = 0.0  # when the last view event arrived (monotonic)
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("view", self.on_view, namespace=NS)
        self.sio.connect(url, namespaces=[NS], auth={"token": token},
                         transports=["websocket"], wait_timeout=30)
        ack = self.sio.call("subscribe", {"view": view}, namespace=NS, timeout=60)
        self.view = ack["view"]
        self.users = {u["id"]: u for u in ack["rows"]}
        self.ids, self.total = ack["ids"], ack["total"]

    def on_view(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.last_event = time.monotonic()
            self.bytes += len(json.dumps(event))
            self.users.update({u["id"]: u for u in event["rows"]})
            self.ids, self.total = event["ids"], event["total"]

    def page(self) -> tuple:
        with self.lock:
            return self.total, [(i, self.users[i]["version"]) for i in self.ids]


def api_page(url: str, token: str, view: dict[str, Any]) -> tuple:
    query = {k: str(v).lower() if isinstance(v, bool) else v
             for k, v in view.items() if v is not None}
    body = requests.get(f"{url}/api/users", params=query, timeout=60,
                        headers={"Authorization": f"Bearer {token}"}).json()
    return body["total"], [(u["id"], u["version"]) for u in body["items"]]


def probe(url: str, token: str, stop: threading.Event, rtts: list[float]) -> None:
    sio = socketio.Client(reconnection=False)
    sio.connect(url, namespaces=[NS], auth={"token": token}, transports=["websocket"])
    while not stop.is_set():
        start = time.monotonic()
        sio.call("latency", {}, namespace=NS, timeout=120)
        rtts.append((start, time.monotonic() - start))
        time.sleep(0.02)
    sio.disconnect()


def write_sql(database: str, *statements: str) -> None:
    """Run ``statements`` from another program, as any outside writer is (no lock shared
    with the server or the probe): sqlite3 on a file, psycopg on a PostgreSQL URL."""
    if database.startswith("postgresql"):
        code = ("import psycopg, sys\nwith psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
                "    for s in sys.argv[2:]: c.execute(s)")
    else:
        code = ("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=60, "
                "isolation_level=None)\nfor s in sys.argv[2:]: c.execute(s)")
    subprocess.run([PY, "-c", code, database, *statements], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--write", choices=["update", "import"], default="update")
    parser.add_argument("--rows", type=int, default=900_000, help="rows of --write import")
    parser.add_argument("--database-url", help="a fresh PostgreSQL database (default: SQLite)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bench.sqlite"
        env, token, _ = setup_livecrud(Path(tmp), 0, args.database_url)
        postgres = args.database_url is not None
        if postgres:
            write_sql(args.database_url,  # printf('m%05d', i), as on SQLite
                      f"INSERT INTO users (username, email) SELECT 'm' || {PADDED5}, "
                      f"'m' || {PADDED5} || '@example.com' FROM generate_series(1, "
                      f"{int(args.users)}) AS i", "VACUUM ANALYZE users")
        else:
            seed_users(database, args.users)
        port = free_port()
        server = Server([PY, "manage.py", "run", "--port", str(port)], port, env)
        url = server.url
        try:
            clients = [Follower(url, token, VIEWS[i % len(VIEWS)]) for i in range(args.clients)]
            stop, rtts = threading.Event(), []
            threading.Thread(target=probe, args=(url, token, stop, rtts), daemon=True).start()
            time.sleep(1)
            baseline = sorted(rtt for _, rtt in rtts)[len(rtts) // 2]
            rss_before = rss_kb(server.proc.pid)
            rtts.clear()

            if args.write == "update":
                statement = "UPDATE users SET active = NOT active WHERE username LIKE 'm%'"
            elif postgres:
                statement = (
                    f"INSERT INTO users (username, email) SELECT 'i' || {PADDED7}, "
                    f"'i' || {PADDED7} || '@example.org' FROM generate_series(1, "
                    f"{int(args.rows)}) AS i")
            else:
                statement = (
                    f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                    f"WHERE i < {int(args.rows)}) INSERT INTO users (username, email) "
                    "SELECT printf('i%07d', i), printf('i%07d@example.org', i) FROM n")
            started = time.monotonic()
            write_sql(args.database_url or str(database), statement)
            committed = time.monotonic()

            expected = {json.dumps(v, sort_keys=True): api_page(url, token, v)
                        for v in (c.view for c in clients)}
            while any(c.page() != expected[json.dumps(c.view, sort_keys=True)]
                      for c in clients):
                if time.monotonic() - committed > 120:
                    print("not converged after 120 s")
                    break
                time.sleep(0.05)
            converged = max(c.last_event for c in clients) - committed
            time.sleep(1)
            stop.set()
            rss_after = rss_kb(server.proc.pid)
            sizes = sorted(c.bytes for c in clients)
            print(f"{args.write} of {args.users if args.write == 'update' else args.rows} rows "
                  f"(the writer took {committed - started:.1f} s), {args.clients} clients on "
                  f"{min(args.clients, len(VIEWS))} views")
            print(f"  every page as the API's, its last event {converged:+.2f} s after the "
                  "writer ended")
            print(f"  bytes per client: median {sizes[len(sizes) // 2]}, max {sizes[-1]}")
            print(f"  server RSS growth: {(rss_after - rss_before) / 1024:.1f} MB")
            during = [rtt for at, rtt in rtts if at < committed] or [0.0]
            after = [rtt for at, rtt in rtts if at >= committed] or [0.0]
            print(f"  probe round trip: baseline {baseline * 1000:.0f} ms; slowest while the "
                  f"writer ran {max(during) * 1000:.0f} ms, after it ended "
                  f"{max(after) * 1000:.0f} ms")
            for client in clients:
                client.sio.disconnect()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
