"""Real processes for the end-to-end tests: the app server (``python manage.py run``,
``flask run``, deploy/entrypoint.sh) on a test's database, and what runs around it in
production (redis-server, nginx, a PostgreSQL server of the test's own, a TCP proxy in
front of PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(name: str, proc: subprocess.Popen, port: int, timeout: float,
                  output: Callable[[], str]) -> None:
    """Return once ``port`` takes a connection; RuntimeError with ``output()`` (the
    process's log) when ``proc`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not start: {output()}")


class ServerProcess:
    """``python manage.py run`` (gevent), or ``flask run`` (threading), in a subprocess."""

    START_TIMEOUT = 30.0  # seconds until the port takes connections

    def __init__(self, db_url: str, instance: Path, env: dict[str, str] | None = None,
                 flask_run: bool = False):
        self.db_url = db_url
        self.instance = instance
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.command = (["-m", "flask", "run"] if flask_run else ["manage.py", "run"])
        self.proc: subprocess.Popen | None = None
        self.log = instance / f"server-{self.port}.log"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "INSTANCE_PATH": str(self.instance),
            "SECRET_KEY": "test-secret",
            "FLASK_CONFIG": "development",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self) -> ServerProcess:
        self.instance.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for_port("server", self.proc, self.port, self.START_TIMEOUT,
                      lambda: self.log.read_text()[-2000:])
        return self

    def argv(self) -> list[str]:
        return [sys.executable, *self.command, "--port", str(self.port)]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port (clients see a server restart)."""
        self.stop()
        return self.start()

    def flask(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a ``flask`` CLI command against this server's database, in another process."""
        return subprocess.run(
            [sys.executable, "-m", "flask", *args], cwd=ROOT, env=self.env,
            capture_output=True, text=True, check=check, timeout=60,
        )


class EntrypointProcess(ServerProcess):
    """``deploy/entrypoint.sh`` (gunicorn, deploy/gunicorn.conf.py) on a migrated database;
    with ``unix``, listening on ``app.sock`` in its instance folder too (UNIX_SOCKET)."""

    def __init__(self, db_url: str, instance: Path, env: dict[str, str] | None = None,
                 unix: bool = False) -> None:
        super().__init__(db_url, instance, env)
        self.socket = instance / "app.sock" if unix else None

    def argv(self) -> list[str]:
        return [str(ROOT / "deploy" / "entrypoint.sh")]

    @property
    def upstream(self) -> int | Path:
        """Where a proxy reaches it: its Unix socket if it has one, else its port."""
        return self.socket or self.port

    @property
    def env(self) -> dict[str, str]:
        socket = {"UNIX_SOCKET": str(self.socket)} if self.socket else {}
        return {
            **super().env, "HOST": "127.0.0.1", "PORT": str(self.port), "SKIP_DB_UPGRADE": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **socket,
        }


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones
    refused) and restored, as a network outage would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_back, args=(server, client), daemon=True).start()

    def _pump_back(self, server: socket.socket, client: socket.socket) -> None:
        """What the server sends, on to the client (subclasses may filter it)."""
        self._pump(server, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


class RedisServer:
    """A private ``redis-server`` on a free port (Redis pub/sub channels are shared by every
    database of one Redis: tests of the message queue need a Redis of their own)."""

    BINARY = shutil.which("redis-server")

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen | None = None

    def url(self, user: str = "", password: str = "", db: int = 0) -> str:
        auth = f"{user}:{password}@" if user or password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir),
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port("redis-server", self.proc, self.port, 10, lambda: "")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class NginxProcess:
    """Debian's nginx running deploy/nginx.conf in the foreground, on a port of its own,
    in front of the given app processes (each a port of 127.0.0.1 or a Unix socket's
    path: ``EntrypointProcess.upstream``); every path it writes is in ``workdir``."""

    BINARY = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)

    def __init__(self, workdir: Path, upstreams: list[int | Path]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstreams = upstreams
        self.proc: subprocess.Popen | None = None

    def render(self) -> Path:
        """deploy/nginx.conf with this test's addresses, inside a main config."""
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        for n, upstream in enumerate(self.upstreams, 1):
            assert f"server app{n}:5000" in site, f"app{n} missing from deploy/nginx.conf"
            address = f"unix:{upstream}" if isinstance(upstream, Path) else f"127.0.0.1:{upstream}"
            site = site.replace(f"server app{n}:5000", f"server {address}")
        assert "listen 80;" in site
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        (w / "livecrud.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {w}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = w / "nginx.conf"
        main.write_text(
            # As root, workers would run as nobody, who cannot enter pytest's tmp dirs.
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes 1;\npid {w}/nginx.pid;\n"
            f"error_log {w}/error.log info;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n    access_log {w}/access.log;\n{temp}\n"
            # Which app process answered (deploy/nginx.conf adds no header of its own,
            # so its locations inherit this one): see ``upstream``.
            "    add_header X-Upstream $upstream_addr always;\n"
            f"    include {w}/livecrud.conf;\n}}\n")
        return main

    def upstream(self) -> int | Path:
        """The app process nginx sends this machine's clients to now (``ip_hash``: every
        client of 127.0.0.1 goes to the same one), as ``upstreams`` names it."""
        answer = requests.get(f"{self.url}/healthz", timeout=10)
        assert answer.status_code == 200, answer.text
        return upstream_of(answer.headers["X-Upstream"])

    def start(self) -> NginxProcess:
        main = self.render()
        args = [self.BINARY, "-p", str(self.workdir), "-e", str(self.workdir / "error.log"),
                "-c", str(main)]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("nginx", self.proc, self.port, 10,
                      lambda: (self.workdir / "error.log").read_text()[-2000:])
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # nginx's fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def upstream_of(addresses: str) -> int | Path:
    """The app process that answered, from nginx's ``$upstream_addr`` (the last one
    tried): a port of 127.0.0.1 or a Unix socket's path."""
    last = addresses.rsplit(", ", 1)[-1]
    return Path(last.removeprefix("unix:")) if last.startswith("unix:") \
        else int(last.rsplit(":", 1)[1])


def _postgres_bin() -> Path | None:
    """Debian's newest PostgreSQL server binaries (postgresql-NN), if any."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
             if (p.parent / "initdb").exists() and p.parent.parent.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name), default=None)


class PostgresServer:
    """A private PostgreSQL server (Debian's initdb and pg_ctl) in a temp dir, on a free
    port: a test may stop and start it without touching the machine's shared one.

    PostgreSQL refuses to run as root: as root, its commands run as the postgres user,
    in a directory of /tmp that user owns (pytest's tmp dirs are root's alone)."""

    BIN = _postgres_bin()
    AS_POSTGRES = os.geteuid() == 0

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="livecrud-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if self.AS_POSTGRES:
            shutil.chown(self.dir, "postgres", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.BIN / tool), *args]
        if self.AS_POSTGRES:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{tool}: {done.stdout}{done.stderr}"

    def init(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        return self.start()

    def start(self) -> PostgresServer:
        # fsync off: a test's data need not survive a power cut, and it is much faster.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "start", "-w", "-t", "30", "-D", str(self.data),
                  "-l", str(self.log), "-o", options)
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every session is ended, as in a restart."""
        self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(self.data))

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def remove(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate",
                      "-D", str(self.data))
        shutil.rmtree(self.dir, ignore_errors=True)
