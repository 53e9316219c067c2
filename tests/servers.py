"""A real server process for the end-to-end tests: ``python manage.py run`` (gevent) or
``flask run`` (threading) on a test's database, in a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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
        wait_for_port("server", self.proc, self.port, 30, lambda: self.log.read_text()[-2000:])
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
    """``deploy/entrypoint.sh`` (gunicorn, deploy/gunicorn.conf.py) on a migrated database."""

    def argv(self) -> list[str]:
        return [str(ROOT / "deploy" / "entrypoint.sh")]

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env, "HOST": "127.0.0.1", "PORT": str(self.port), "SKIP_DB_UPGRADE": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }


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
    in front of the given app ports; every path it writes is in ``workdir``."""

    BINARY = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)

    def __init__(self, workdir: Path, app_ports: list[int]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_ports = app_ports
        self.proc: subprocess.Popen | None = None

    def render(self) -> Path:
        """deploy/nginx.conf with this test's addresses, inside a main config."""
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        for n, port in enumerate(self.app_ports, 1):
            assert f"server app{n}:5000" in site, f"app{n} missing from deploy/nginx.conf"
            site = site.replace(f"server app{n}:5000", f"server 127.0.0.1:{port}")
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
            f"    include {w}/livecrud.conf;\n}}\n")
        return main

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
