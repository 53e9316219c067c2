"""Reconnect-storm benchmark: what a crowd of subscribers arriving at once costs.

Starts ``python manage.py run`` (gevent) on a PostgreSQL database of its own (or, with
``--sqlite``, a SQLite file), then ``--rounds`` times connects ``--clients`` /users
subscribers (bench/swarm.mjs's lean client, ``--batch`` at a time: a process's clients
coming back after a restart or moving over from a dead process), each authenticating
with a token and subscribing to the plain stream (``--view``: to the dashboard's first
page); prints how long they took and the server's CPU per connection, then drops
every connection at once (a network blip, a load balancer restarting) and prints the
server's CPU per connection for that, and its garbage collections meanwhile (each
pauses every client of the process: bench/gcpauses).

    .venv/bin/python bench/connect.py
    .venv/bin/python bench/connect.py --clients 2000 --batch 200
    .venv/bin/python bench/connect.py --sqlite
    .venv/bin/python bench/connect.py --view --users 10000   # dashboards: a view each
    .venv/bin/python bench/connect.py --people 1000          # each client another user
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import (  # noqa: E402, I001
    PY, ROOT, Server, Swarm, cpu_seconds, free_port, scratch_database, setup_livecrud)


def pauses(log: Path, seen: int) -> tuple[list[tuple[int, float]], int]:
    """The collections logged after the first ``seen`` lines: (generation, ms) each."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [(int(g), float(ms)) for g, ms in map(str.split, lines[seen:])], len(lines)


def quiet(pid: int) -> float:
    """The CPU seconds ``pid`` has used, once it has used next to none for a second."""
    used = cpu_seconds(pid)
    while True:
        time.sleep(1)
        now = cpu_seconds(pid)
        if now - used < 0.02:
            return now
        used = now


PEOPLE = """
import json, sys
from app import create_app
from app.auth.tokens import issue_token
from app.users.service import create_user
with create_app().app_context():
    users = [create_user({"username": f"person{n}", "email": f"person{n}@example.com",
                          "password": "bench-password"}) for n in range(int(sys.argv[1]))]
    print(json.dumps([issue_token(user) for user in users]))
"""


def people(env: dict[str, str], count: int) -> list[str]:
    """``count`` new users' API tokens."""
    out = subprocess.run([PY, "-c", PEOPLE, str(count)], cwd=ROOT, env={**os.environ, **env},
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def add_users(url: str, count: int) -> None:
    """``count`` users in one plain-SQL statement (logged by the triggers like any)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) "
            "INSERT INTO users (username, email) SELECT 'm' || i, 'm' || i || '@example.com' "
            "FROM n"), {"n": count})
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="connecting at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--view", action="store_true",
                        help="subscribe to the dashboard's first page (a view), not the plain "
                             "stream")
    parser.add_argument("--users", type=int, default=0, help="users added to the table first")
    parser.add_argument("--people", type=int, default=1,
                        help="the clients are this many distinct users, each with a token "
                             "(presence changes with each newcomer)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (without a database name)")
    args = parser.parse_args()
    database = (nullcontext(None) if args.sqlite
                else scratch_database(args.database_url, "bench_connect"))
    with database as url, tempfile.TemporaryDirectory() as tmp:
        env, token, _ = setup_livecrud(Path(tmp), 0, url)
        if args.users:
            add_users(env["DATABASE_URL"], args.users)
        tokens = people(env, args.people) if args.people > 1 else [token]
        log = Path(tmp) / "gc.log"
        env |= {"PYTHONPATH": str(ROOT / "bench" / "gcpauses"), "GC_PAUSE_LOG": str(log)}
        port = free_port()
        server = Server([PY, "manage.py", "run", "--port", str(port)], port, env)
        try:
            time.sleep(2)
            _, seen = pauses(log, 0)
            for n in range(1, args.rounds + 1):
                swarm = Swarm()
                try:
                    cpu, start = cpu_seconds(server.proc.pid), time.monotonic()
                    swarm.ask("connect " + json.dumps({
                        "url": server.url, "namespace": "/users", "event": "changes",
                        "tokens": tokens, "subscribe": True, "clients": args.clients,
                        "batch": args.batch, "client": "raw",
                        **({"views": [{}]} if args.view else {})}))
                    took = time.monotonic() - start
                    cpu = cpu_seconds(server.proc.pid) - cpu
                finally:
                    before_leaving = cpu_seconds(server.proc.pid)
                    swarm.close()  # every client's connection drops at once
                print(f"round {n}: {args.clients} connected and subscribed in {took:.1f} s, "
                      f"server CPU {1000 * cpu / args.clients:.2f} ms a connection")
                left = quiet(server.proc.pid) - before_leaving
                print(f"  leaving: server CPU {1000 * left / args.clients:.2f} ms a connection")
                collections, seen = pauses(log, seen)
                longest = max(collections, key=lambda c: c[1], default=(0, 0.0))
                print(f"  {len(collections)} garbage collections while they came and went, "
                      f"{sum(ms for _, ms in collections):.0f} ms in all, the longest "
                      f"{longest[1]:.0f} ms (generation {longest[0]})")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
