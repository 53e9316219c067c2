"""Idle benchmark: what one LiveCRUD process costs when nothing happens.

Starts ``python manage.py run`` (gevent) on a PostgreSQL database of its own (created,
dropped after) with no client, waits for it to settle, then reads over ``--seconds``
the server's CPU and the transactions PostgreSQL counted on that database
(``pg_stat_database``: the feed's polls and sweeps, everything the process asks).
``--env NAME=VALUE`` sets the server's configuration, to compare settings in one run:

    .venv/bin/python bench/idle.py
    .venv/bin/python bench/idle.py --env LIVE_LISTEN_POLL_INTERVAL=0.05
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import PY, Server, cpu_seconds, free_port, scratch_database, setup_livecrud  # noqa: E402


def transactions(conn: psycopg.Connection) -> int:
    """Transactions PostgreSQL counted on the database so far (a backend publishes its
    counts when it goes idle, at most once a second; this read is one of them)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    [count] = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (without a database name)")
    args = parser.parse_args()
    with scratch_database(args.database_url, "bench_idle") as url, \
            tempfile.TemporaryDirectory() as tmp, psycopg.connect(url, autocommit=True) as db:
        env = setup_livecrud(Path(tmp), 0, url)[0]
        env.update(item.split("=", 1) for item in args.env)
        port = free_port()
        server = Server([PY, "manage.py", "run", "--port", str(port)], port, env)
        try:
            time.sleep(5)  # start-up queries done, statistics published
            cpu, count, start = cpu_seconds(server.proc.pid), transactions(db), time.monotonic()
            time.sleep(args.seconds)
            took = time.monotonic() - start
            cpu = cpu_seconds(server.proc.pid) - cpu
            count = transactions(db) - count
        finally:
            server.stop()
    settings = " ".join(args.env) or "defaults"
    print(f"idle {took:.0f} s ({settings}): server CPU {100 * cpu / took:.1f} %, "
          f"{count / took:.1f} transactions/s")


if __name__ == "__main__":
    main()
