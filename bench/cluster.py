"""Cluster benchmark: two gunicorn processes behind nginx on PostgreSQL and Redis.

Starts, on this machine, a PostgreSQL database of its own (``createdb
bench_cluster_<pid>``, dropped after), a private redis-server, two app processes as
deploy/ runs them (deploy/entrypoint.sh: gunicorn, ``app.worker.Worker``, one worker;
SOCKETIO_MESSAGE_QUEUE on that Redis, one SECRET_KEY) and nginx on deploy/nginx.conf,
then measures commit-to-client latency of /users subscribers (bench/swarm.mjs), all of
them through nginx:

(a) one process: half the clients, all on one process (the other one runs idle);
(b) two processes: the other half joins, on the other process: one change at a time,
    p99 as a ratio to (a)'s in the same run;
(c) a burst of changes (200/s for 10 s) with every client connected.

The changes are PATCHes through nginx, the writers spread over both processes (or,
with ``--writer sql``, plain SQL UPDATEs straight to PostgreSQL). Each writer waits for
its answer before the next change, so a slow server slows the writers: the rate they
reached is printed. The measuring clients are swarm.mjs's lean WebSocket client (its
``"client": "raw"``), which parses a frame shared by many subscribers once, so that on
this 2-core machine the swarm leaves the CPU to the servers; ``--client socket.io``
measures with socket.io-client instead.
nginx's ip_hash keys on the first three octets of the client's IPv4 address, so each
half of the swarm connects from its own loopback /24 (127.0.K.1), probed first for the
process it lands on; the clients each process holds are counted from its established
TCP connections (``ss``) and printed, with each part's CPU and the share of all of it
spent in the kernel.

    .venv/bin/python bench/cluster.py                           # 4000 clients, 1 run
    .venv/bin/python bench/cluster.py --runs 3
    .venv/bin/python bench/cluster.py --clients 1000 --burst 100 --seconds 5
    .venv/bin/python bench/cluster.py --writer sql     # plain SQL straight to PostgreSQL
    .venv/bin/python bench/cluster.py --client socket.io
    .venv/bin/python bench/cluster.py --upstream unix  # nginx to the processes: Unix sockets

PostgreSQL: ``--database-url`` (default postgresql://postgres@127.0.0.1:5432), a role
that may create databases. Needs Debian's nginx and redis-server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from live import (  # noqa: E402, I001
    EDITS, Swarm, collect, cpu_seconds, patch_loop, save_results, scratch_database,
    setup_livecrud, write_changes)

from tests.servers import EntrypointProcess, NginxProcess, RedisServer, upstream_of  # noqa: E402

UPSTREAM_HEADER = "X-Bench-Upstream"


class BenchNginx(NginxProcess):
    """deploy/nginx.conf as tests/test_nginx.py runs it, with room for ``connections``
    simultaneous connections (each client is two: to nginx and on to the app) and a
    response header naming the app process that answered."""

    def __init__(self, workdir: Path, upstreams: list[int | Path], connections: int,
                 workers: int) -> None:
        super().__init__(workdir, upstreams)
        self.connections = connections
        self.workers = workers

    def render(self) -> Path:
        main = super().render()
        text = main.read_text()
        events = "events { worker_connections 1024; }"
        processes = "worker_processes 1;"
        assert events in text and processes in text and "http {\n" in text, \
            "tests/servers.py's main config changed"
        text = text.replace(processes, f"worker_processes {self.workers};")
        text = text.replace(events, f"worker_rlimit_nofile {self.connections + 100};\n"
                                    f"events {{ worker_connections {self.connections}; }}")
        text = text.replace("http {\n", f"http {{\n    add_header {UPSTREAM_HEADER} "
                                         "$upstream_addr always;\n", 1)
        main.write_text(text)
        return main


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def workers(pid: int, count: int = 1, timeout: float = 30) -> list[int]:
    """The ``count`` children of ``pid`` (gunicorn's worker, nginx's workers), once they
    exist."""
    deadline = time.monotonic() + timeout
    while len(found := children(pid)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} started {len(found)} of {count} workers")
        time.sleep(0.1)
    return found


def upstream_for(nginx_port: int, source: str) -> int | Path:
    """The app process (port or Unix socket) nginx sends a client at ``source`` to."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=30,
                                      source_address=(source, 0))
    deadline = time.monotonic() + 60
    try:
        while True:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return upstream_of(response.getheader(UPSTREAM_HEADER))
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz through nginx: {response.status}")
            time.sleep(0.5)
    finally:
        conn.close()


def sources_for(nginx_port: int, upstreams: list[int | Path]) -> dict[int | Path, str]:
    """One loopback source address per app process (ip_hash: one /24 each)."""
    found: dict[int | Path, str] = {}
    for k in range(1, 255):
        source = f"127.0.{k}.1"
        found.setdefault(upstream_for(nginx_port, source), source)
        if len(found) == len(upstreams):
            return found
    raise RuntimeError(f"no source address reaches each of {upstreams}: {found}")


def held(upstream: int | Path) -> int:
    """Established connections to an app process's port or Unix socket (through nginx:
    one per client)."""
    where = ["-Hx", "state", "established", "src", str(upstream)] if isinstance(
        upstream, Path) else ["-Htn", "state", "established", f"( sport = :{upstream} )"]
    out = subprocess.run(["ss", *where], capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


class Cluster:
    """The database, Redis, two app processes and nginx of one benchmark; nginx reaches
    the processes over loopback TCP, or (``unix``) over Unix sockets."""

    def __init__(self, workdir: Path, base_url: str, clients: int, writers: int,
                 nginx_workers: int, unix: bool = False) -> None:
        self.unix = unix
        self.redis: RedisServer | None = None
        self.apps: list[EntrypointProcess] = []
        self.nginx: BenchNginx | None = None
        self._database = ExitStack()
        try:
            self.db_url = self._database.enter_context(
                scratch_database(base_url, "bench_cluster"))
            self._start(workdir, clients, writers, nginx_workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, workdir: Path, clients: int, writers: int, nginx_workers: int) -> None:
        db_url = self.db_url
        self.redis = RedisServer(workdir / "redis").start()
        env, self.token, self.ids = setup_livecrud(workdir, writers, db_url)
        del env["INSTANCE_PATH"]  # each process has its own
        env.update({"SOCKETIO_MESSAGE_QUEUE": self.redis.url(),
                    "SOCKETIO_CHANNEL": f"bench-cluster-{os.getpid()}",
                    # nginx's X-Forwarded-For names the client for the per-address cap.
                    "SOCKETIO_TRUSTED_PROXIES": "127.0.0.1"})
        for n in (1, 2):
            self.apps.append(EntrypointProcess(db_url, workdir / f"app{n}", env,
                                               unix=self.unix).start())
        self.upstreams = [a.upstream for a in self.apps]
        self.nginx = BenchNginx(workdir / "nginx", self.upstreams, 2 * clients + 1000,
                                nginx_workers).start()
        # After the workers answer.
        self.sources = sources_for(self.nginx.port, self.upstreams)
        self.pids = {f"app{n}": workers(a.proc.pid) for n, a in enumerate(self.apps, 1)}
        self.pids["nginx"] = workers(self.nginx.proc.pid, nginx_workers)
        self.pids["redis"] = [self.redis.proc.pid]

    def held(self) -> dict[str, int]:
        return {f"app{n}": held(upstream) for n, upstream in enumerate(self.upstreams, 1)}

    def writes(self, events: int, step: float, writers: int, writer: str = "api") -> None:
        """``events`` PATCHes through nginx, writer w from process w % 2's address; or
        (``writer="sql"``) plain UPDATEs straight to PostgreSQL, one transaction each."""
        sources = [self.sources[u] for u in self.upstreams]
        if writer == "sql":
            write_changes(lambda w, times: sql_loop(self.db_url, self.ids[w], times),
                          events, step, writers)
            return
        write_changes(lambda w, times: patch_loop(self.nginx.port, self.token, self.ids[w],
                                                  times, sources[w % len(sources)]),
                      events, step, writers)

    def stop(self) -> None:
        for part in (self.nginx, *self.apps, self.redis):
            if part:
                part.stop()
        self._database.close()


def sql_loop(db_url: str, user_id: int, times: list[float]) -> None:
    """Write like any other program would: plain SQL, one autocommitted UPDATE each."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        for at in times:
            time.sleep(max(0.0, at - time.monotonic()))
            conn.execute("UPDATE users SET email = %s WHERE id = %s",
                         (f"s{user_id}-{next(EDITS)}@example.com", user_id))


def connect(cluster: Cluster, upstream: int | Path, clients: int, client: str) -> Swarm:
    """A swarm of ``clients`` /users subscribers through nginx, landing on ``upstream``."""
    swarm = Swarm()
    swarm.ask("connect " + json.dumps({
        "url": cluster.nginx.url, "namespace": "/users", "event": "changes",
        "token": cluster.token, "subscribe": True, "clients": clients,
        "localAddress": cluster.sources[upstream], "batch": 100, "client": client}))
    return swarm


def case(cluster: Cluster, swarms: list[Swarm], clients: int, fire, events: int) -> dict:
    """Fire the changes, collect every swarm's deliveries; the CPU each part used, and
    the share of it all spent in the kernel (the loopback TCP of every hop)."""
    pids = {**cluster.pids, **{f"swarm{n}": [s.proc.pid] for n, s in enumerate(swarms, 1)}}
    every = [pid for group in pids.values() for pid in group]
    kernel = partial(cpu_seconds, kernel_only=True)
    before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
    before_kernel = sum(map(kernel, every))
    start = time.monotonic()
    fire()
    # The writers wait for each answer: a busy server slows them down below the rate.
    writing = time.monotonic() - start
    result = collect(swarms, events * clients)
    wall = time.monotonic() - start
    used = {name: sum(map(cpu_seconds, group)) - before[name] for name, group in pids.items()}
    cpu = {name: round(seconds / wall * 100) for name, seconds in used.items()}
    in_kernel = (sum(map(kernel, every)) - before_kernel) / max(sum(used.values()), 1e-9)
    return {"clients": clients, "events": events, **result, "held": cluster.held(),
            "cpu_percent": cpu, "kernel_percent": round(in_kernel * 100),
            "seconds": round(wall, 1),
            "write_seconds": round(writing, 1), "changes_per_second": round(events / writing, 1)}


def run_once(cluster: Cluster, args: argparse.Namespace) -> dict:
    half = args.clients // 2
    one, two = cluster.upstreams
    load = os.getloadavg()
    spaced = partial(cluster.writes, args.events, args.interval, args.writers, args.writer)
    burst_events = int(args.burst * args.seconds)
    burst = partial(cluster.writes, burst_events, 1 / args.burst, args.writers, args.writer)
    started = time.monotonic()
    swarms = [connect(cluster, one, half, args.client)]
    try:
        connected = [round(time.monotonic() - started, 1)]
        time.sleep(1)
        a = case(cluster, swarms, half, spaced, args.events)
        started = time.monotonic()
        swarms.append(connect(cluster, two, args.clients - half, args.client))
        connected.append(round(time.monotonic() - started, 1))
        time.sleep(1)
        b = case(cluster, swarms, args.clients, spaced, args.events)
        c = case(cluster, swarms, args.clients, burst, burst_events)
    finally:
        for swarm in swarms:
            swarm.close()
    return {"load": [round(x, 2) for x in load], "connect_seconds": connected,
            "a": a, "b": b, "c": c,
            "p99_ratio": round(b["p99_ms"] / a["p99_ms"], 2)}


def print_run(n: int, run: dict, args: argparse.Namespace) -> None:
    print(f"\nrun {n}, load average {' '.join(map(str, run['load']))} (before the run)")
    names = list(run["a"]["cpu_percent"]) + ["swarm2"]
    print(f"  {'case':30} {'clients':>7} {'held app1/app2':>14} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'lost':>6} {'ooo':>5}   CPU % " + " ".join(f"{k:>6}" for k in names)
          + "  in kernel")
    labels = {"a": f"(a) one process, {args.events} changes",
              "b": f"(b) two processes, {args.events} changes",
              "c": f"(c) {args.burst:g}/s for {args.seconds:g} s"}
    for key, label in labels.items():
        r = run[key]
        cpu = " ".join(f"{r['cpu_percent'].get(k, ''):>6}" for k in names)
        print(f"  {label:30} {r['clients']:7d} {r['held']['app1']:>7}/{r['held']['app2']:<6} "
              f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} {r['lost']:6d} "
              f"{r['out_of_order']:5d}         {cpu}  {r['kernel_percent']:>8} %")
    print(f"  p99 ratio (b)/(a): {run['p99_ratio']:.2f} (target <= 1.5); "
          f"(c) p99 {run['c']['p99_ms']:.0f} ms (target < 750), lost {run['c']['lost']}, "
          f"written at {run['c']['changes_per_second']:g}/s (asked {args.burst:g}/s); "
          f"connecting took {' + '.join(map(str, run['connect_seconds']))} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4000, help="in all, half per process")
    parser.add_argument("--events", type=int, default=20, help="changes of (a) and (b)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between them")
    parser.add_argument("--burst", type=float, default=200, help="changes per second of (c)")
    parser.add_argument("--seconds", type=float, default=10, help="burst length")
    parser.add_argument("--writers", type=int, default=8, help="writer threads")
    parser.add_argument("--writer", choices=["api", "sql"], default="api",
                        help="PATCH through nginx, or plain SQL UPDATEs to PostgreSQL")
    parser.add_argument("--client", choices=["raw", "socket.io"], default="raw",
                        help="the measuring clients: swarm.mjs's lean WebSocket client, "
                             "or socket.io-client")
    parser.add_argument("--nginx-workers", type=int, default=os.cpu_count() or 1,
                        help="nginx's worker_processes (nginx's packaged configs say auto: "
                             "one per core)")
    parser.add_argument("--upstream", choices=["tcp", "unix"], default="tcp",
                        help="how nginx reaches the app processes: loopback TCP, or a Unix "
                             "socket each (UNIX_SOCKET)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (without a database name)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    # nginx holds two descriptors per client, each swarm one per client.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * args.clients + 1100:
        sys.exit(f"RLIMIT_NOFILE {hard} is too low for {args.clients} clients")

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), args.database_url, args.clients, args.writers,
                          args.nginx_workers, args.upstream == "unix")
        try:
            processes = ", ".join(map(str, cluster.upstreams))
            print(f"nginx on {cluster.nginx.port}, processes at {processes}; client addresses "
                  + ", ".join(f"{cluster.sources[u]} -> {u}" for u in cluster.upstreams))
            for n in range(1, args.runs + 1):
                runs.append(run_once(cluster, args))
                print_run(n, runs[-1], args)
        finally:
            cluster.stop()
    save_results("cluster", args, runs)


if __name__ == "__main__":
    threading.excepthook = lambda a: (print(a.exc_value, file=sys.stderr), os._exit(1))
    main()
