"""deploy/nginx.conf run for real (Debian's nginx) in front of two app processes started by
the Docker image's command (deploy/entrypoint.sh: gunicorn), on PostgreSQL and a private
Redis; and compose.yaml validated by ``docker-compose config``."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import time

import pytest
import requests
import websocket

from app.auth.tokens import issue_token
from tests.cluster_helpers import api_create
from tests.conftest import unavailable
from tests.live_client import LiveClient
from tests.servers import ROOT, EntrypointProcess, NginxProcess

pytestmark = [pytest.mark.server, pytest.mark.postgres]


@pytest.fixture
def behind_nginx(db_url: str, queue_env: dict[str, str], nginx_cluster
                 ) -> tuple[NginxProcess, list[EntrypointProcess]]:
    """nginx on deploy/nginx.conf in front of two gunicorn processes."""
    cluster = nginx_cluster(db_url, queue_env)
    return cluster.nginx, cluster.apps


def handshake_from(nginx: NginxProcess, source: str) -> int:
    """The status of an Engine.IO polling handshake through nginx from ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/socket.io/?EIO=4&transport=polling")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix-sockets"])
def test_clients_through_nginx_see_live_changes_of_both_processes(
        db_url, queue_env, nginx_cluster, make_user, unix):
    """Over loopback TCP or Unix sockets (UNIX_SOCKET) between nginx and the processes;
    either way a process counts its clients by their own address (X-Forwarded-For)."""
    cluster = nginx_cluster(db_url, {**queue_env, "SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": "2"},
                            unix=unix)
    nginx, (_, two) = cluster.nginx, cluster.apps
    token = issue_token(make_user("admin", role="admin"))
    upgraded = LiveClient(nginx.url, token)  # polling first, then the WebSocket upgrade
    upgraded.sio.connect(nginx.url, namespaces=["/users"], auth={"token": token},
                         transports=["polling", "websocket"], wait_timeout=10)
    direct = LiveClient(nginx.url, token).connect()  # WebSocket only
    try:
        deadline = time.monotonic() + 10
        while upgraded.sio.transport() != "websocket":
            assert time.monotonic() < deadline, "the polling session was never upgraded"
            time.sleep(0.05)
        start = upgraded.subscribe(None)["cursor"]
        direct.subscribe(None)
        assert api_create(nginx.url, token, "via_nginx").status_code == 201
        assert api_create(two.url, token, "via_two").status_code == 201  # behind nginx's back
        for client in (upgraded, direct):
            got = client.wait_for(2)
            assert [(c["cursor"], c["row"]["username"]) for c in got] == [
                (start + 1, "via_nginx"), (start + 2, "via_two")]
        # Two connections from 127.0.0.1 are its cap, not that of every client of nginx
        # (ip_hash sends all of 127.0.0.0/24 to the same process).
        assert handshake_from(nginx, "127.0.0.1") == 429
        assert handshake_from(nginx, "127.0.0.2") == 200
    finally:
        upgraded.close()
        direct.close()
    # Their WebSockets ended without an error (over a Unix socket, every peer's address
    # is "", which gevent-websocket keys its clients by).
    time.sleep(1)
    for process in cluster.apps:
        assert "Traceback" not in process.log.read_text(), process.log.read_text()[-3000:]


def engineio_open(nginx: NginxProcess, origin: str) -> str:
    """What a WebSocket Engine.IO handshake through nginx with ``origin`` is first sent."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{nginx.port}/socket.io/?EIO=4&transport=websocket", origin=origin,
        timeout=10)
    sock = ws.sock
    try:
        return ws.recv()
    except websocket.WebSocketException:
        return ""
    finally:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            ws.close()
        sock.close()  # when the server closed first, ws.close() leaves it open


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_nginx_passes_host_scheme_and_plain_websockets_and_limits_bodies(behind_nginx,
                                                                         make_user):
    nginx, _ = behind_nginx
    user = make_user("wendy")
    # The origin check compares Origin with X-Forwarded-Proto://Host: nginx must pass the
    # Host with its port, or a browser on this page would be refused.
    handshake = f"{nginx.url}/socket.io/?EIO=4&transport=polling"
    for origin, status in [(nginx.url, 200), ("http://evil.example", 400)]:
        assert requests.get(handshake, headers={"Origin": origin}, timeout=10).status_code \
            == status, origin
    # The same over a WebSocket handshake (nginx's Upgrade path).
    assert engineio_open(nginx, nginx.url).startswith("0{")  # Engine.IO's open packet
    assert not engineio_open(nginx, "http://evil.example").startswith("0{")

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{nginx.port}/ws/chat/lobby?token={issue_token(user)}", timeout=10)
    try:
        ws.send(json.dumps({"text": "through nginx"}))
        assert json.loads(ws.recv())["text"] == "through nginx"
    finally:
        ws.close()

    # Refused by nginx's client_max_body_size, from the Content-Length.
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 2097152\r\n\r\n")
        assert sock.recv(200).startswith(b"HTTP/1.1 413 ")


COMPOSE = shutil.which("docker-compose")
SECRETS = {"POSTGRES_PASSWORD": "pg-pass-123", "REDIS_PASSWORD": "redis-pass-123",
           "SECRET_KEY": "a-long-secret-key"}


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    if COMPOSE is None:
        unavailable("compose tests need Debian's docker-compose (apt-get install docker-compose)")
    return subprocess.run([COMPOSE, "-f", str(ROOT / "compose.yaml"), *args], cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                          text=True, timeout=60)


def test_compose_file_is_valid_and_describes_the_cluster():
    assert compose("config", "-q", env=SECRETS).returncode == 0
    services = compose("config", "--services", env=SECRETS).stdout.split()
    assert sorted(services) == ["app1", "app2", "nginx", "postgres", "redis"]
    rendered = compose("config", env=SECRETS).stdout
    assert "/etc/nginx/conf.d/default.conf" in rendered and "nginx.conf" in rendered
    assert "redis://livecrud:redis-pass-123@redis:6379/0" in rendered
    # No password is ever a default: without them, compose refuses to start.
    missing = compose("config", "-q", env={})
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
