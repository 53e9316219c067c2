"""Hostile clients against one server process: what they cost a well-behaved client.

A victim Socket.IO client on /users times ``latency`` acknowledgements all along; each
case prints the victim's round trip (p50 / max) during the attack next to its baseline
taken just before:
- frame: a 20 MB WebSocket frame, announced and streamed whole (refused with 1009);
- flood: 2,000 ``subscribe`` events sent at once on one connection (rate limited);
- stampede: 50 Socket.IO clients connecting at the same moment.

    .venv/bin/python bench/hostile.py                     # starts manage.py run on SQLite
    .venv/bin/python bench/hostile.py --url http://127.0.0.1:5000 --token TOKEN
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from live import PY, Server, free_port, setup_livecrud  # noqa: E402

from tests.raw_ws import RawWebSocket  # noqa: E402

NS = "/users"
EIO_WS = "/socket.io/?EIO=4&transport=websocket"


class Victim:
    """A /users client timing ``latency`` acknowledgements in a thread, all the time."""

    def __init__(self, url: str, token: str) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.sio.connect(url, namespaces=[NS], auth={"token": token},
                         transports=["websocket"], wait_timeout=10)
        self.samples: list[tuple[float, float]] = []  # (when it was sent, round trip)
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            sent = time.monotonic()
            self.sio.call("latency", {}, namespace=NS, timeout=120)
            self.samples.append((sent, time.monotonic() - sent))
            time.sleep(0.01)

    def between(self, start: float, end: float) -> list[float]:
        return [rtt for sent, rtt in self.samples if start <= sent <= end or
                (sent < start and sent + rtt > start)]

    def stop(self) -> None:
        self.running = False
        self.thread.join(130)
        self.sio.disconnect()


def ms(values: list[float]) -> str:
    if not values:
        return "no sample"
    return f"{statistics.median(values) * 1000:6.1f} / {max(values) * 1000:7.1f} ms"


def run_case(victim: Victim, name: str, attack: Callable[[], str], settle: float = 1.0) -> None:
    start = time.monotonic()
    time.sleep(2.0)  # baseline
    middle = time.monotonic()
    note = attack()
    time.sleep(settle)
    end = time.monotonic()
    print(f"{name:9} baseline p50/max {ms(victim.between(start, middle))}   "
          f"during {ms(victim.between(middle, end))}   {note}", flush=True)


def raw_users(port: int, token: str) -> RawWebSocket:
    ws = RawWebSocket(port, EIO_WS)
    ws.recv_text()
    ws.send_text("40/users," + json.dumps({"token": token}))
    ws.recv_text()
    return ws


def frame_case(port: int) -> str:
    ws = RawWebSocket(port, EIO_WS)
    ws.recv_text()
    size = 20_000_000
    started = time.monotonic()

    def send() -> None:
        with contextlib.suppress(OSError):  # the server closes on us: expected
            ws.sock.sendall(ws.header(size) + b"a" * size)

    sender = threading.Thread(target=send)
    sender.start()
    code, _ = ws.wait_close(30)
    closed = time.monotonic() - started
    sender.join(30)
    ws.close()
    return f"closed {code} after {closed * 1000:.0f} ms"


def flood_case(port: int, token: str, events: int = 2000) -> str:
    ws = raw_users(port, token)
    answers = {"ok": 0, "rate limit": 0, "other": 0}

    def drain() -> None:
        try:
            while sum(answers.values()) < events:
                text = ws.recv_text()
                if not text.startswith("43/users,"):
                    continue
                kind = ("rate limit" if '"rate limit' in text
                        else "ok" if '"cursor"' in text or '"snapshot"' in text else "other")
                answers[kind] += 1
        except OSError:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    packets = b"".join(RawWebSocket.frame(
        f'42/users,{i}["subscribe",{{"since":null}}]'.encode()) for i in range(events))
    ws.sock.sendall(packets)
    reader.join(60)
    ws.close()
    return f"{events} subscribes: " + ", ".join(f"{v} {k}" for k, v in answers.items())


def stampede_case(url: str, token: str, clients: int = 50) -> str:
    opened: list[socketio.Client] = []
    failures: list[str] = []
    gate = threading.Barrier(clients)

    def connect() -> None:
        sio = socketio.Client(reconnection=False)
        gate.wait()
        try:
            sio.connect(url, namespaces=[NS], auth={"token": token}, transports=["websocket"],
                        wait_timeout=30)
            opened.append(sio)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failures.append(str(exc))

    started = time.monotonic()
    threads = [threading.Thread(target=connect) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    took = time.monotonic() - started
    for sio in opened:
        sio.disconnect()
    return f"{len(opened)} of {clients} connected in {took * 1000:.0f} ms" + (
        f" ({len(failures)} failed: {failures[0]})" if failures else "")


def start_server(workdir: Path) -> tuple[Server, str]:
    """``manage.py run`` on a fresh SQLite database (bench/live.py's set-up), and a token."""
    env, token, _ = setup_livecrud(workdir, 0)
    port = free_port()
    return Server([PY, "manage.py", "run", "--port", str(port)], port, env), token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (else one is started)")
    parser.add_argument("--token", help="an API token of that server's admin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.url:
            url, token = args.url.rstrip("/"), args.token
        else:
            server, token = start_server(Path(tmp))
            url = server.url
        port = int(url.rsplit(":", 1)[1])
        victim = Victim(url, token)
        try:
            run_case(victim, "frame", lambda: frame_case(port))
            run_case(victim, "flood", lambda: flood_case(port, token))
            run_case(victim, "stampede", lambda: stampede_case(url, token))
        finally:
            victim.stop()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
