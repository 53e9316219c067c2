"""Big-table benchmark: the dashboard and the API over a million users.

Seeds N users with plain SQL into a fresh, migrated database, starts the real server
(`python manage.py run`, gevent) on it, logs in (form, for the pages) and issues a token
(`flask tokens issue`, for the API), then prints the median and worst time of each
request over --requests runs. Then, over Socket.IO (namespace /users, the token, WebSocket
only), it times live-view subscriptions: one fresh connection per view for ~20 distinct views
(emit to ack; the ack's size as compact JSON), and --clients connections subscribing at once,
each to a distinct view (time from the barrier to the last ack):

    .venv/bin/python bench/bigtable.py                      # SQLite, 1,000,000 users
    .venv/bin/python bench/bigtable.py --users 100000
    .venv/bin/python bench/bigtable.py --no-views           # HTTP timings only
    .venv/bin/python bench/bigtable.py --clients 100
    .venv/bin/python bench/bigtable.py --database-url postgresql://postgres@127.0.0.1/bench

The views are distinct (no two share a page in the server's memory), deep pages included.
Targets: a subscribe acked in under 50 ms (median) with under 20 KB; 50 simultaneous
subscribes all answered within 2 s.

A PostgreSQL database must exist and hold no users (it is migrated here). On SQLite the
seed goes through every trigger (change log, FTS5, counts); on PostgreSQL the row
triggers are disabled for the load and the indexes built after it, as pg_restore does,
then user_counts is rebuilt from the table.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import socketio
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import database_url  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402

PASSWORD = "bench-password-1"
NEEDLE = "r0123456"  # matches user0123456 (and nothing else at 1M)
NS = "/users"


def flask(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


SQLITE_SEED = """
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)
INSERT INTO users (username, email, role, active, created_at, updated_at)
SELECT printf('%s%07d', CASE i % 3 WHEN 0 THEN 'User' ELSE 'user' END, i),
       printf('u%07d@Example.com', i),
       CASE WHEN i % 100 = 1 THEN 'admin' ELSE 'user' END, i % 10 <> 0,
       strftime('%Y-%m-%d %H:%M:%f000', 'now', printf('-%d seconds', i)),
       strftime('%Y-%m-%d %H:%M:%f000', 'now')
FROM s"""
PG_SEED = """
INSERT INTO users (username, email, role, active, created_at, updated_at)
SELECT (CASE i % 3 WHEN 0 THEN 'User' ELSE 'user' END) || lpad(i::text, 7, '0'),
       'u' || lpad(i::text, 7, '0') || '@Example.com',
       CASE WHEN i % 100 = 1 THEN 'admin' ELSE 'user' END, i % 10 <> 0,
       now() - i * interval '1 second', now()
FROM generate_series(1, :n) AS i"""


def seed(url: str, n: int) -> None:
    engine = create_engine(database_url(url))
    with engine.begin() as conn:
        if conn.scalar(text("SELECT count(*) FROM users")):
            raise SystemExit("the database already has users: give a fresh one")
        if engine.dialect.name == "sqlite":
            conn.execute(text(SQLITE_SEED), {"n": n})
        else:
            conn.execute(text("ALTER TABLE users DISABLE TRIGGER USER"))
            indexes = conn.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users' "
                "AND indexname LIKE 'ix_users_%'")).all()
            for name, _ in indexes:
                conn.execute(text(f"DROP INDEX {name}"))
            conn.execute(text(PG_SEED), {"n": n})
            conn.execute(text("SET maintenance_work_mem = '256MB'"))
            for _, definition in indexes:
                conn.execute(text(definition))
            conn.execute(text("ALTER TABLE users ENABLE TRIGGER USER"))
            conn.execute(text("DELETE FROM user_counts"))
            conn.execute(text("INSERT INTO user_counts SELECT role, active, count(*) "
                              "FROM users GROUP BY role, active"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # PostgreSQL: as autovacuum leaves a loaded table (index-only scans need it).
        conn.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE"))
    engine.dispose()


def login(base: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/login").read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD,
                                   "csrf_token": token}).encode()
    opener.open(f"{base}/login", form).read()
    return opener


def timed(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str],
          runs: int) -> tuple[float, float, int]:
    """(median ms, max ms, bytes) of ``runs`` GETs, after one warm-up."""
    times = []
    size = 0
    for i in range(runs + 1):
        request = urllib.request.Request(url, headers=headers)
        start = time.perf_counter()
        with opener.open(request) as response:
            if response.status != 200 or "/login" in response.url:
                raise SystemExit(f"{url}: {response.status} {response.url}")
            size = len(response.read())
        if i:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times), size


def view_label(view: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in view.items())


def views(n: int) -> list[dict[str, Any]]:
    """~20 distinct views of n users: shallow and deep pages of several sorts, rare and
    absent needles, filters."""
    last = max(1, (n + 20) // 20)  # the last page of n + 1 users (bench included)
    return [
        {"sort": "username", "page": 1},
        {"sort": "username", "page": 2},
        {"sort": "username", "page": 1000},
        {"sort": "username", "page": 5000},
        {"sort": "username", "page": max(1, last // 2)},
        {"sort": "username", "page": last},
        {"sort": "-updated_at", "page": 1},
        {"sort": "-updated_at", "page": 500},
        {"sort": "-updated_at", "page": 5000},
        {"sort": "email", "page": 3000},
        {"sort": "-created_at", "page": 10000},
        {"page": 5000},
        {"sort": "-id", "page": 7},
        {"q": NEEDLE},
        {"q": "r012345"},
        {"q": "u0500000@"},
        {"q": "no-such-user"},
        {"role": "admin"},
        {"role": "admin", "active": False, "sort": "-username"},
        {"active": False, "page": 100},
    ]


def crowd_views(count: int, n: int) -> list[dict[str, Any]]:
    """``count`` distinct views, none among ``views(n)``: spread pages of five sorts, every
    fifth a needle of its own."""
    sorts = ("username", "-updated_at", "email", "-id", "created_at")
    pages = max(1, (n + 1) // 20)
    result: list[dict[str, Any]] = []
    for i in range(count):
        if i % 5 == 4:
            result.append({"q": f"r{(104321 + 9973 * i) % max(n, 1):07d}"})
        else:
            result.append({"sort": sorts[i % 5], "page": 3 + (i * 9973) % max(1, pages - 3)})
    return result


def connect(url: str, token: str) -> socketio.Client:
    sio = socketio.Client(reconnection=False)
    sio.connect(url, namespaces=[NS], auth={"token": token}, transports=["websocket"],
                wait_timeout=30)
    return sio


def subscribe(sio: socketio.Client, view: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(ms from emit to ack, ack); a timeout is answered as an error ack."""
    start = time.perf_counter()
    try:
        ack = sio.call("subscribe", {"view": view}, namespace=NS, timeout=60)
    except socketio.exceptions.TimeoutError:
        ack = {"error": "no ack within 60 s"}
    return (time.perf_counter() - start) * 1000, ack


def ack_bytes(ack: dict[str, Any]) -> int:
    return len(json.dumps(ack, separators=(",", ":")).encode())


def bench_views(url: str, token: str, n: int) -> None:
    """One fresh connection per view, one subscribe each: emit-to-ack times and sizes."""
    warm = connect(url, token)
    try:
        ms, ack = subscribe(warm, {"sort": "-email", "page": 3})
    finally:
        warm.disconnect()
    print(f"\n(warm-up subscribe, not counted: {ms:.1f} ms"
          f"{', ERROR ' + str(ack['error']) if 'error' in ack else ''})")
    print(f"\n{'view (one connection each)':44} {'connect ms':>10} {'ack ms':>8} "
          f"{'bytes':>8} {'total':>9}")
    times, sizes = [], []
    for view in views(n):
        start = time.perf_counter()
        sio = connect(url, token)
        connected = (time.perf_counter() - start) * 1000
        try:
            ms, ack = subscribe(sio, view)
        finally:
            sio.disconnect()
        if "error" in ack:
            print(f"{view_label(view):44} {connected:10.1f} {ms:8.1f}  ERROR {ack['error']}")
            continue
        size = ack_bytes(ack)
        times.append(ms)
        sizes.append(size)
        print(f"{view_label(view):44} {connected:10.1f} {ms:8.1f} {size:8} {ack['total']:9}")
    if times:
        print(f"{'subscribe ack, ' + str(len(times)) + ' views':44} {'median':>10} "
              f"{statistics.median(times):8.1f} {statistics.median(sizes):8.0f}   "
              f"(target < 50 ms, < 20 KB)")
        print(f"{'':44} {'max':>10} {max(times):8.1f} {max(sizes):8}")


def bench_crowd(url: str, token: str, n: int, count: int) -> None:
    """``count`` connections, then a subscribe each at once (a barrier), distinct views."""
    start = time.perf_counter()
    clients = []
    try:
        for _ in range(count):
            clients.append(connect(url, token))
        opened = time.perf_counter() - start
        released: list[float] = []
        barrier = threading.Barrier(count, action=lambda: released.append(time.perf_counter()))
        results: list[tuple[float, dict[str, Any], float]] = [(0.0, {}, 0.0)] * count

        def run(i: int, sio: socketio.Client, view: dict[str, Any]) -> None:
            barrier.wait()
            ms, ack = subscribe(sio, view)
            results[i] = (ms, ack, time.perf_counter())

        pairs = enumerate(zip(clients, crowd_views(count, n), strict=True))
        threads = [threading.Thread(target=run, args=(i, sio, view)) for i, (sio, view) in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for sio in clients:
            sio.disconnect()
    errors = [ack["error"] for _, ack, _ in results if "error" in ack]
    times = [ms for ms, _, _ in results]
    first = (min(end for _, _, end in results) - released[0]) * 1000
    last = (max(end for _, _, end in results) - released[0]) * 1000
    sizes = [ack_bytes(ack) for _, ack, _ in results if "error" not in ack]
    serial = []
    for view in crowd_views(count, n):  # the same views one by one, for comparison
        sio = connect(url, token)
        try:
            serial.append(subscribe(sio, view)[0])
        finally:
            sio.disconnect()
    print(f"\n{count} clients subscribing at once (distinct views; {count} connections "
          f"opened in {opened:.1f} s)")
    print(f"  last ack after {last:.1f} ms (target < 2000 ms), first after {first:.1f} ms; "
          f"per client: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
    print(f"  the same views one after another: sum {sum(serial):.1f} ms, median "
          f"{statistics.median(serial):.1f} ms, max {max(serial):.1f} ms")
    if sizes:
        print(f"  ack bytes: median {statistics.median(sizes):.0f}, max {max(sizes)}")
    print(f"  errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--database-url", help="a fresh PostgreSQL database (default: SQLite)")
    parser.add_argument("--no-views", action="store_true",
                        help="skip the live-view (Socket.IO) measurements")
    parser.add_argument("--clients", type=int, default=50,
                        help="connections subscribing at once (default 50)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="livecrud-bigtable-"))
    url = args.database_url or f"sqlite:///{work / 'big.sqlite'}"
    env = {**os.environ, "DATABASE_URL": url, "INSTANCE_PATH": str(work / "instance"),
           "SECRET_KEY": "bench-secret"}
    env.pop("FLASK_APP", None)
    flask(env, "db", "upgrade")
    start = time.perf_counter()
    seed(url, args.users)
    print(f"seeded {args.users:,} users in {time.perf_counter() - start:.1f} s ({url})")
    flask(env, "users", "create", "bench", "--email", "bench@example.com",
          "--password", PASSWORD, "--admin")
    token = flask(env, "tokens", "issue", "bench").strip().split()[-1]

    server = ServerProcess(url, work / "instance", {"SECRET_KEY": "bench-secret"}).start()
    try:
        opener = login(server.url)
        bearer = {"Authorization": f"Bearer {token}"}
        cases = [
            ("GET / (page 1)", "/", {}),
            ("GET /?page=5000", "/?page=5000", {}),
            (f"GET /?q={NEEDLE}", f"/?q={NEEDLE}", {}),
            ("GET /live/stats", "/live/stats", {}),
            ("GET /api/users?page=5000", "/api/users?page=5000", bearer),
        ]
        print(f"\n{'request':32} {'median ms':>10} {'max ms':>10} {'bytes':>8}")
        for label, path, headers in cases:
            median, worst, size = timed(opener, server.url + path, headers, args.requests)
            print(f"{label:32} {median:10.1f} {worst:10.1f} {size:8}")
        if not args.no_views:
            bench_views(server.url, token, args.users)
            if args.clients > 0:
                bench_crowd(server.url, token, args.users, args.clients)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
