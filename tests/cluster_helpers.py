"""Several app processes behind nginx, a steady API writer and the change log, for the
tests of a cluster (tests/test_nginx.py, tests/test_cluster_faults.py)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, select

from app.models import UserChange
from config import database_url
from tests.live_client import ResumingClient
from tests.servers import EntrypointProcess, NginxProcess


@dataclass
class Cluster:
    """nginx on deploy/nginx.conf in front of two gunicorn processes started as the
    Docker image starts them (deploy/entrypoint.sh), sharing one database and queue;
    nginx reaches them over TCP, or (``unix``) over Unix sockets."""

    db_url: str
    env: dict[str, str]
    workdir: Path
    apps: list[EntrypointProcess] = field(default_factory=list)
    nginx: NginxProcess | None = None
    unix: bool = False

    def start(self) -> Cluster:
        env = {**self.env, "SOCKETIO_TRUSTED_PROXIES": "127.0.0.1"}
        for n in (1, 2):
            self.apps.append(EntrypointProcess(self.db_url, self.workdir / f"app{n}", env,
                                               unix=self.unix).start())
        self.nginx = NginxProcess(self.workdir / "nginx", [a.upstream for a in self.apps]).start()
        return self

    def stop(self) -> None:
        if self.nginx:
            self.nginx.stop()
        for process in self.apps:
            process.stop()

    def split(self) -> tuple[EntrypointProcess, EntrypointProcess]:
        """The process nginx sends this machine's clients to, and the other one."""
        upstream = self.nginx.upstream()
        chosen = next(a for a in self.apps if a.upstream == upstream)
        return chosen, next(a for a in self.apps if a is not chosen)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_create(base: str, token: str, username: str) -> requests.Response:
    """Create a user through the API of ``base`` (a process, or nginx)."""
    return requests.post(f"{base}/api/users", headers=bearer(token), timeout=10, json={
        "username": username, "email": f"{username}@example.com", "password": "long-enough-pw"})


class Writer:
    """Writes through the API of ``base`` steadily, in a thread: a new user, then two
    updates of it, and again. A request that fails (a process restarting behind nginx)
    is tried again later; the change log, not this writer, says what was written."""

    def __init__(self, base: str, token: str, prefix: str = "writer", every: float = 0.05) -> None:
        self.base = base
        self.headers = bearer(token)
        self.prefix = prefix
        self.every = every
        self.statuses: list[int | str] = []  # every answer's status, or the error's name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> Writer:
        self._stop.set()
        self._thread.join(30)
        return self

    def written(self) -> int:
        return sum(1 for s in self.statuses if s in (200, 201))

    def _write(self) -> None:
        user: dict[str, Any] | None = None
        for n in itertools.count():
            if self._stop.wait(self.every):
                return
            if user is None or n % 3 == 0:
                name = f"{self.prefix}{n}"
                answer = self._send("POST", "/api/users", {
                    "username": name, "email": f"{name}@example.com",
                    "password": "long-enough-pw"})
                if answer is not None and answer.status_code == 201:
                    user = answer.json()
            else:
                answer = self._send("PATCH", f"/api/users/{user['id']}", {
                    "email": f"{user['username']}.{n}@example.com",
                    "version": user["version"]})
                if answer is not None and answer.status_code in (200, 409):
                    user = answer.json().get("current", answer.json())

    def _send(self, method: str, path: str, body: dict[str, Any]) -> requests.Response | None:
        try:
            answer = requests.request(method, self.base + path, json=body,
                                      headers=self.headers, timeout=10)
        except requests.RequestException as exc:
            self.statuses.append(type(exc).__name__)
            return None
        self.statuses.append(answer.status_code)
        return answer


def change_log(db_url: str) -> list[tuple[int, str, int]]:
    """``(cursor, op, user id)`` of every change in the database's log, in order."""
    engine = create_engine(database_url(db_url))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                select(UserChange.cursor, UserChange.op, UserChange.user_id)
                .order_by(UserChange.cursor))]
    finally:
        engine.dispose()


def assert_every_change_once(clients: list[ResumingClient], db_url: str,
                             timeout: float = 20) -> list[tuple[int, str, int]]:
    """Each client gets, after its first snapshot, every change of the log exactly once
    and in cursor order (waiting up to ``timeout`` for the last one); returns the log."""
    log = change_log(db_url)
    for client in clients:
        client.wait_for_cursor(log[-1][0], timeout)
    time.sleep(0.3)  # a duplicate of the last change would arrive meanwhile
    for client in clients:
        got = [(c["cursor"], c["op"], c["id"]) for c in client.received]
        expected = [c for c in log if c[0] > client.start]
        missing = sorted(set(expected) - set(got))
        twice = sorted({c for c in got if got.count(c) > 1})
        assert not missing and not twice, \
            f"{client.name}: missing {missing[:10]}, twice {twice[:10]}"
        assert got == expected, f"{client.name}: out of cursor order"
        assert client.problems == [], f"{client.name}: {client.problems}"
    return log
