#!/usr/bin/env bash
# Smoke test of the production start-up, without Docker: deploy/entrypoint.sh (flask db
# upgrade, then gunicorn with deploy/gunicorn.conf.py) on a fresh database, FLASK_CONFIG=
# production, then /login, the vendored Socket.IO client and an Engine.IO handshake over
# polling and over WebSocket, a log without query strings. Uses .venv (make .venv/.dev) and node_modules (npm ci).
# The database is a fresh PostgreSQL one when DATABASE_URL is postgresql://..., else SQLite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
[[ -x $PY ]] || { echo "smoke: no .venv (run make .venv/.dev first)" >&2; exit 1; }

tmp=$(mktemp -d)
pid=
smoke_db=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        timeout 30 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    if [[ -n $smoke_db ]]; then
        psql -h 127.0.0.1 -U postgres -X -q -d postgres \
            -c "DROP DATABASE IF EXISTS $smoke_db WITH (FORCE)" || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

url="sqlite:///$tmp/instance/livecrud.sqlite"
if [[ ${DATABASE_URL:-} == postgres* ]]; then
    smoke_db=livecrud_smoke_$$
    psql -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1 -d postgres \
        -c "CREATE DATABASE $smoke_db"
    url="${DATABASE_URL%/*}/$smoke_db"
fi
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "smoke: entrypoint on 127.0.0.1:$port, database ${url%%:*}"

env -u SECRET_KEY -u SOCKETIO_MESSAGE_QUEUE PATH="$ROOT/.venv/bin:$PATH" \
    FLASK_CONFIG=production INSTANCE_PATH="$tmp/instance" DATABASE_URL="$url" \
    HOST=127.0.0.1 PORT="$port" \
    deploy/entrypoint.sh >"$tmp/server.log" 2>&1 &
pid=$!

if ! "$PY" - "$port" "$pid" <<'PY'; then
"""Wait for /login, then check the vendored client and the Engine.IO handshakes."""
import json
import os
import sys
import time
import urllib.request

import websocket

port, pid = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"


def get(path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return r.status, r.read().decode(errors="replace")


deadline = time.monotonic() + 90  # includes flask db upgrade
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("smoke: server exited before answering")
    try:
        status, body = get("/login")
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("smoke: /login did not answer within 90 s")
        time.sleep(0.5)
assert status == 200 and 'name="username"' in body, (status, body[:300])
print("smoke: GET /login -> 200 with the login form")
# Query strings stay out of the server's log (tokens travel in them): checked below.
get("/login?token=smoke-secret-token")

status, body = get("/vendor/socket.io.esm.min.js")
assert status == 200 and len(body) > 10_000, (status, len(body))
print("smoke: GET /vendor/socket.io.esm.min.js -> 200")

status, body = get("/socket.io/?EIO=4&transport=polling")
assert status == 200 and body.startswith("0{"), (status, body[:200])
assert json.loads(body[1:])["sid"]
print(f"smoke: Engine.IO polling handshake -> {body[:40]}...")

ws = websocket.create_connection(
    f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=5)
try:
    opened = ws.recv()
    assert opened.startswith("0{"), opened
    # A Socket.IO connect to /users without credentials must be refused ("44/users,"):
    # that proves Socket.IO is served over the WebSocket and that it checks credentials.
    ws.send("40/users,")
    answer = ws.recv()
    assert answer.startswith("44/users,"), answer
finally:
    ws.close()
print(f"smoke: WebSocket -> {opened[:30]}...; connect /users -> {answer[:60]}")
PY
    echo "smoke: FAILED; server log:" >&2
    tail -n 60 "$tmp/server.log" >&2
    exit 1
fi

if grep -q smoke-secret-token "$tmp/server.log"; then
    echo "smoke: the server log shows query strings:" >&2
    grep -F smoke-secret-token "$tmp/server.log" >&2
    exit 1
fi
echo "smoke: no query string in the server log"

kill -TERM "$pid"
if ! timeout 30 tail --pid="$pid" -f /dev/null; then
    echo "smoke: gunicorn did not stop within 30 s of SIGTERM" >&2
    exit 1
fi
wait "$pid" || true
pid=
echo "smoke: gunicorn stopped cleanly on SIGTERM"
