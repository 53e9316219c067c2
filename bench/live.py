"""Live-table benchmark: commit-to-client latency, delivery and server cost.

For each N it starts, in the same run, the bare reference server (bench/bare_server.py)
and LiveCRUD (`python manage.py run`, gevent, SQLite), connects N Socket.IO clients
(a Node swarm, bench/swarm.mjs) and measures:
- latency of every delivery (p50, p99), delivered, lost and out-of-order counts;
- server memory per connection (RSS growth / N) and CPU per delivered message;
and prints LiveCRUD's figures as ratios to the bare stack's (absolute times on shared
machines drift by a third from run to run; the ratios much less).

    .venv/bin/python bench/live.py --clients 1 100 1000
    .venv/bin/python bench/live.py --clients 1000 --burst 200 --seconds 10
    .venv/bin/python bench/live.py --clients 5000 --no-bare
    .venv/bin/python bench/live.py --clients 1000 --burst 200 --writer sql
    .venv/bin/python bench/live.py --clients 1000 --views 50 --users 2000 --events 10
    .venv/bin/python bench/live.py --clients 1000 --views 50 --users 2000 --burst 200
    .venv/bin/python bench/live.py --clients 1000 --views 50 --users 2000 --burst 200 --writer sql

With ``--views V`` the clients follow live views instead of the plain stream: client i
shows page ``i % V + 1`` of the list sorted by username (20 a page) of ``--users`` users,
and each change renames the user of the last page so that it moves to the first page:
every view changes, every client gets a ``view`` event. A view event delivers every
change up to its cursor: each is one delivery, timed from its commit in the change log.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int, kernel_only: bool = False) -> float:
    """CPU time the process used (user and kernel, or only in the kernel)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[12]) + (0 if kernel_only else int(fields[11]))) / CLK


class Http:
    """One keep-alive HTTP connection: far lighter on the CPU the server shares than
    ``requests``, so the writers disturb the measurement less."""

    def __init__(self, port: int, headers: dict | None = None, source: str | None = None
                 ) -> None:
        # ``source``: the local address to connect from (nginx's ip_hash keys on it).
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                               source_address=(source, 0) if source else None)
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    def call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        self.conn.request(method, path, json.dumps(body) if body is not None else None,
                          self.headers)
        response = self.conn.getresponse()
        raw = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:200]!r}")
        return json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


class Swarm:
    """The Node client swarm, driven over stdin/stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(ROOT / "bench/swarm.mjs")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(30)


class Server:
    """A server process, with its memory and CPU readings."""

    def __init__(self, args: list[str], port: int, env: dict | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def percentile(histogram: Counter[int], p: float) -> float | None:
    """The ``p``th percentile (ms) of a histogram of tenths of ms, as swarm.mjs ranks."""
    rank = int(p / 100 * sum(histogram.values()))
    for key in sorted(histogram):
        rank -= histogram[key]
        if rank < 0:
            return key / 10
    return None


def collect(swarms: list[Swarm], expected: int, timeout: float = 30,
            before_report: Callable[[Swarm], None] | None = None) -> dict:
    """The swarms' reports until ``expected`` deliveries arrived or ``timeout`` seconds
    passed, merged: delivered, lost, out of order, p50/p99/max over every delivery (and
    p50/p99 of each swarm's own, when there are several). ``before_report(swarm)`` runs
    before each report is asked for."""
    histograms: list[Counter[int]] = [Counter() for _ in swarms]
    delivered = out_of_order = 0
    worst = 0.0
    deadline = time.monotonic() + timeout
    while True:
        for swarm, histogram in zip(swarms, histograms, strict=True):
            if before_report:
                before_report(swarm)
            report = swarm.ask("report")
            delivered += report["delivered"]
            out_of_order += report["out_of_order"]
            worst = max(worst, report["max_ms"] or 0)
            histogram.update({int(k): v for k, v in report["histogram"].items()})
        if delivered >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    merged = sum(histograms, Counter())
    result = {"delivered": delivered, "lost": expected - delivered,
              "out_of_order": out_of_order, "p50_ms": percentile(merged, 50),
              "p99_ms": percentile(merged, 99), "max_ms": round(worst, 1)}
    if len(swarms) > 1:
        result["per_swarm"] = [{"p50_ms": percentile(h, 50), "p99_ms": percentile(h, 99)}
                               for h in histograms]
    return result


def measure(server: Server, clients: int, connect: dict, fire, count: int,
            commits: Callable[[int], list] | None = None) -> dict:
    """Connect the swarm, fire ``count`` events through ``fire``, report the deliveries.

    ``commits(after)``, for view clients: the changes after cursor ``after`` as
    ``[[cursor, commit time in ms]...]``, sent to the swarm before each report."""
    swarm = Swarm()
    try:
        rss_before = rss_kb(server.proc.pid)
        swarm.ask("connect " + json.dumps({**connect, "url": server.url, "clients": clients}))
        time.sleep(1)
        rss_after = rss_kb(server.proc.pid)
        cpu_before = cpu_seconds(server.proc.pid)
        start = commits(-1)[-1][0] if commits else 0

        def report(swarm: Swarm) -> None:
            if commits:
                swarm.proc.stdin.write(f"commits {json.dumps(commits(start))}\n")

        fired = time.monotonic()
        fire()
        rate = count / (time.monotonic() - fired)  # writers wait for each answer
        result = collect([swarm], count * clients, before_report=report)
        delivered = result["delivered"]
        cpu = cpu_seconds(server.proc.pid) - cpu_before
        return {
            "clients": clients, "events": count, "written_per_second": round(rate, 1),
            **result,
            "kb_per_connection": round((rss_after - rss_before) / clients, 1),
            "server_rss_mb": round(rss_kb(server.proc.pid) / 1024, 1),
            "cpu_us_per_message": round(cpu / max(delivered, 1) * 1e6, 1),
        }
    finally:
        swarm.close()


def bare_run(clients: int, events: int, interval: float) -> dict:
    port = free_port()
    server = Server([PY, "bench/bare_server.py", str(port)], port)
    try:
        def fire() -> None:
            http = Http(port)
            for seq in range(events):
                http.call("POST", f"/emit?seq={seq}")
                time.sleep(interval)
            http.close()

        return measure(server, clients, {"namespace": "/", "event": "bare"}, fire, events)
    finally:
        server.stop()


def seed_users(database: Path, count: int) -> None:
    """``count`` users named m00001... in one plain-SQL statement."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                 "INSERT INTO users (username, email) "
                 "SELECT printf('m%05d', i), printf('m%05d@example.com', i) FROM n", (count,))
    conn.close()


def setup_livecrud(workdir: Path, writers: int, database_url: str | None = None
                   ) -> tuple[dict, str, list[int]]:
    """Migrate the database (SQLite in ``workdir`` unless ``database_url``), create the
    admin ``bench`` and ``writers`` target users: the server's environment, an API token
    and the targets' ids."""
    env = {"INSTANCE_PATH": str(workdir),
           "DATABASE_URL": database_url or f"sqlite:///{workdir}/bench.sqlite",
           "SECRET_KEY": "bench-only", "FLASK_CONFIG": "production",
           # Every client of the bench comes from one address.
           "SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": "20000"}
    run = lambda *a: subprocess.run([PY, "-m", "flask", *a], cwd=ROOT, check=True,  # noqa: E731
                                    env={**os.environ, **env}, capture_output=True,
                                    text=True).stdout.strip()
    run("db", "upgrade")
    run("users", "create", "bench", "--email", "bench@example.com", "--password",
        "bench-password", "--admin")
    ids = [int(run("users", "create", f"target{i}", "--email", f"target{i}@example.com",
                   "--password", "bench-password")) for i in range(writers)]
    return env, run("tokens", "issue", "bench"), ids


@contextmanager
def scratch_database(base_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL database of this run's own on ``base_url`` (a role that may create
    databases); its URL. Dropped after."""
    import psycopg  # only the PostgreSQL benchmarks need it
    from sqlalchemy.engine import make_url

    name, url = f"{prefix}_{os.getpid()}", make_url(base_url)
    with psycopg.connect(url.set(database="postgres").render_as_string(hide_password=False),
                         autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


EDITS = itertools.count()  # a new email every time: the same one again is no change


def patch_loop(port: int, token: str, user_id: int, times: list[float],
               source: str | None = None) -> None:
    """PATCH the user's email at each of ``times`` (monotonic), over one connection."""
    http = Http(port, {"Authorization": f"Bearer {token}"}, source)
    version = http.call("GET", f"/api/users/{user_id}")["version"]
    for at in times:
        time.sleep(max(0.0, at - time.monotonic()))
        version = http.call("PATCH", f"/api/users/{user_id}",
                            {"email": f"u{user_id}-{next(EDITS)}@example.com",
                             "version": version})["version"]
    http.close()


def write_changes(loop: Callable[[int, list[float]], None], events: int, step: float,
                  writers: int) -> None:
    """``events`` changes ``step`` seconds apart, shared round-robin by ``writers``
    threads: ``loop(w, times)`` makes writer w's changes at its times."""
    start = time.monotonic() + 0.2
    schedule = [start + i * step for i in range(events)]
    per_writer = [schedule[w::writers] for w in range(writers)]
    with ThreadPoolExecutor(writers) as pool:
        for f in [pool.submit(loop, w, per_writer[w]) for w in range(writers) if per_writer[w]]:
            f.result()


def sql_loop(database: Path, user_id: int, times: list[float]) -> None:
    """Write like any other program would: plain SQL, one transaction per change."""
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    for n, at in enumerate(times):
        time.sleep(max(0.0, at - time.monotonic()))
        conn.execute("UPDATE users SET email = ? WHERE id = ?", (f"s{user_id}-{n}@example.com",
                                                                  user_id))
    conn.close()


def commit_times(database: Path, after: int) -> list[list[float]]:
    """``[cursor, commit time in ms]`` of every change after ``after`` (the last one
    when ``after`` is -1), from the change log."""
    conn = sqlite3.connect(database)
    query = ("SELECT cursor, created_at FROM user_changes ORDER BY cursor DESC LIMIT 1"
             if after < 0 else
             "SELECT cursor, created_at FROM user_changes WHERE cursor > ? ORDER BY cursor")
    rows = conn.execute(query, () if after < 0 else (after,)).fetchall()
    conn.close()
    return [[cursor, datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp() * 1000]
            for cursor, at in rows]


def views_run(clients: int, events: int, interval: float, rate: float | None, views: int,
              users: int, writers: int = 8, writer: str = "api") -> dict:
    """Clients on ``views`` pages of one list; each change moves the list's last row to
    page 1. At ``rate`` changes a second, ``writers`` threads rename the last users in
    turn (a precomputed order, so no two renames race for the same row), through the
    API or (``writer="sql"``) with plain SQL."""
    if rate and events > users:
        raise SystemExit(f"--users must be at least the burst's {events} changes")
    with tempfile.TemporaryDirectory() as tmp:
        env, token, _ = setup_livecrud(Path(tmp), 0)
        seed_users(Path(tmp) / "bench.sqlite", users)
        port = free_port()
        server = Server([PY, "manage.py", "run", "--port", str(port)], port, env)
        auth = {"Authorization": f"Bearer {token}"}
        try:
            def one_by_one() -> None:
                http = Http(port, auth)
                for n in range(events):
                    last = http.call("GET", "/api/users?sort=-username&per_page=1")["items"][0]
                    http.call("PATCH", f"/api/users/{last['id']}",
                              {"username": f"a{99999 - n:05d}", "version": last["version"]})
                    time.sleep(interval)
                http.close()

            def burst() -> None:
                http = Http(port, auth)
                last = [user for page in range(1, events // 100 + 2) for user in http.call(
                    "GET", f"/api/users?sort=-username&per_page=100&page={page}")["items"]]
                http.close()
                start = time.monotonic() + 0.2
                # Change n renames the n-th last user to a name before every other one: each
                # lands at the top of page 1 and shifts every page by one row.
                plan = [(start + n / rate, user, f"a{99999 - n:05d}")
                        for n, user in enumerate(last[:events])]

                def rename(jobs: list) -> None:
                    http = Http(port, auth)
                    for at, user, name in jobs:
                        time.sleep(max(0.0, at - time.monotonic()))
                        http.call("PATCH", f"/api/users/{user['id']}",
                                  {"username": name, "version": user["version"]})
                    http.close()

                def rename_sql(jobs: list) -> None:
                    conn = sqlite3.connect(Path(tmp) / "bench.sqlite", timeout=30,
                                           isolation_level=None)
                    for at, user, name in jobs:
                        time.sleep(max(0.0, at - time.monotonic()))
                        conn.execute("UPDATE users SET username = ? WHERE id = ?",
                                     (name, user["id"]))
                    conn.close()

                with ThreadPoolExecutor(writers) as pool:
                    job = rename if writer == "api" else rename_sql
                    for f in [pool.submit(job, plan[w::writers]) for w in range(writers)]:
                        f.result()

            pages = [{"sort": "username", "page": p, "per_page": 20} for p in range(1, views + 1)]
            return measure(server, clients, {"namespace": "/users", "event": "view",
                                             "token": token, "subscribe": True,
                                             "views": pages}, burst if rate else one_by_one,
                           events, partial(commit_times, Path(tmp) / "bench.sqlite"))
        finally:
            server.stop()


def livecrud_run(clients: int, events: int, interval: float, rate: float | None,
                 writer: str = "api", writers: int = 8) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env, token, ids = setup_livecrud(Path(tmp), writers)
        port = free_port()
        server = Server([PY, "manage.py", "run", "--port", str(port)], port, env)
        try:
            loop = partial(patch_loop, port, token) if writer == "api" else partial(
                sql_loop, Path(tmp) / "bench.sqlite")
            fire = partial(write_changes, lambda w, times: loop(ids[w], times), events,
                           1 / rate if rate else interval, writers)

            return measure(server, clients, {"namespace": "/users", "event": "changes",
                                             "token": token, "subscribe": True}, fire, events)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--events", type=int, default=20, help="changes per run")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between changes")
    parser.add_argument("--burst", type=float, help="changes per second (overrides --interval)")
    parser.add_argument("--seconds", type=float, default=10, help="burst length")
    parser.add_argument("--no-bare", action="store_true", help="skip the reference server")
    parser.add_argument("--writer", choices=["api", "sql"], default="api",
                        help="make changes through the API, or with plain SQL from this process")
    parser.add_argument("--writers", type=int, default=8,
                        help="threads making the changes, each waiting for its answers")
    parser.add_argument("--views", type=int, help="clients follow this many live views")
    parser.add_argument("--users", type=int, default=2000, help="users in the table (--views)")
    args = parser.parse_args()
    events = int(args.burst * args.seconds) if args.burst else args.events

    rows = []
    for n in args.clients:
        bare = None if args.no_bare else bare_run(n, events, 1 / args.burst if args.burst
                                                   else args.interval)
        if args.views:
            ours = views_run(n, events, args.interval, args.burst, args.views, args.users,
                             args.writers, args.writer)
            what = (f"{events} changes through {args.writer}, {args.views} views of "
                    f"{args.users} users") + (f" at {args.burst:g}/s" if args.burst else "")
        else:
            ours = livecrud_run(n, events, args.interval, args.burst, args.writer, args.writers)
            what = f"{events} changes through {args.writer}" + (
                f" at {args.burst:g}/s" if args.burst else "")
        rows.append({"bare": bare, "livecrud": ours})
        print(f"\nN={n}, {what}")
        print(f"  {'':10} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'ooo':>5} "
              f"{'KB/conn':>8} {'CPU us/msg':>10}")
        for name, r in (("bare", bare), ("livecrud", ours)):
            if r:
                print(f"  {name:10} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['lost']:6d} "
                      f"{r['out_of_order']:5d} {r['kb_per_connection']:8.1f} "
                      f"{r['cpu_us_per_message']:10.1f}")
        if args.burst:
            print(f"  written at {ours['written_per_second']:g}/s (asked {args.burst:g}/s)")
        if bare:
            print(f"  {'ratio':10} {ours['p50_ms'] / bare['p50_ms']:8.2f} "
                  f"{ours['p99_ms'] / bare['p99_ms']:8.2f} {'':6} {'':5} "
                  f"{ours['kb_per_connection'] / max(bare['kb_per_connection'], 0.1):8.2f} "
                  f"{ours['cpu_us_per_message'] / max(bare['cpu_us_per_message'], 0.1):10.2f}")
    save_results("live", args, rows)


def save_results(name: str, args: argparse.Namespace, runs: list) -> None:
    """Write a run's raw figures to bench/results/ (not committed) and say where."""
    out = ROOT / "bench/results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}-{int(time.time())}.json"
    path.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
    print(f"\nraw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    threading.excepthook = lambda a: (print(a.exc_value, file=sys.stderr), os._exit(1))
    main()
