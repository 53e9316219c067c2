"""Configuration classes, one per environment, every value read from the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_PATH", BASE_DIR / "instance"))


def _secret_key() -> str:
    """Return SECRET_KEY from the environment, else one generated once and kept on disk."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        # Write it whole under a private name, then publish it with a link, which fails
        # if another process published first: every process ends up with the same key.
        tmp = path.with_name(f".secret_key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def database_url(url: str | None) -> str:
    """Normalise a DATABASE_URL: plain ``postgresql://`` means psycopg 3."""
    if not url:
        return f"sqlite:///{INSTANCE_DIR / 'livecrud.sqlite'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _origins(value: str | None) -> list[str] | None:
    """Comma-separated origins; None means same origin only."""
    if not value:
        return None
    return [o.strip() for o in value.split(",") if o.strip()]


class Config:
    """Settings shared by every environment."""

    SECRET_KEY = _secret_key()
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    # Completed for the database in use by app.database.engine_options.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    SOCKETIO_MESSAGE_QUEUE = os.environ.get("SOCKETIO_MESSAGE_QUEUE") or None
    # The Redis pub/sub channel of this site's processes (channels are shared by every
    # database number of one Redis: two sites on one Redis need two names).
    SOCKETIO_CHANNEL = os.environ.get("SOCKETIO_CHANNEL") or "flask-socketio"
    # Cluster presence (several processes on Redis): seconds between two refreshes of
    # this process's entry, which expires after 3 of them when the process dies.
    PRESENCE_REFRESH_SECONDS = float(os.environ.get("PRESENCE_REFRESH_SECONDS", 5))
    # Presence broadcasts after a recent one wait this many seconds per connection of
    # the process (0.2 s at 1000), then go out together.
    PRESENCE_BROADCAST_COST = float(os.environ.get("PRESENCE_BROADCAST_COST", 0.0002))
    CORS_ALLOWED_ORIGINS = _origins(os.environ.get("CORS_ALLOWED_ORIGINS"))
    # None lets Flask-SocketIO pick: gevent when monkey-patched, threading under `flask run`.
    SOCKETIO_ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE") or None
    # Largest Socket.IO message accepted (bytes); chat messages are a few KB at most.
    SOCKETIO_MAX_HTTP_BUFFER_SIZE = int(os.environ.get("SOCKETIO_MAX_HTTP_BUFFER_SIZE", 64 * 1024))
    # WebSockets (Socket.IO's and /ws/chat's) compressed with permessage-deflate when the
    # client offers it (browsers do): a message is compressed once for all its sockets
    # (app/deflate.py). WEBSOCKET_COMPRESSION=0 turns it off.
    WEBSOCKET_COMPRESSION = os.environ.get("WEBSOCKET_COMPRESSION", "1") != "0"
    # Every client event of every namespace, per connection: events per second and burst.
    SOCKETIO_EVENT_RATE = float(os.environ.get("SOCKETIO_EVENT_RATE", 50))
    SOCKETIO_EVENT_BURST = int(os.environ.get("SOCKETIO_EVENT_BURST", 200))
    # SQLite: seconds a write waits for the lock another program holds (cooperatively,
    # other clients go on meanwhile) before it is answered 503 with Retry-After.
    SQLITE_LOCK_TIMEOUT = float(os.environ.get("SQLITE_LOCK_TIMEOUT", 5))
    # Repeated log lines: each message template is written at most this many times per
    # window (seconds), then suppressed and counted (app/loglimit.py).
    LOG_REPEAT_LIMIT = int(os.environ.get("LOG_REPEAT_LIMIT", 10))
    LOG_REPEAT_WINDOW = float(os.environ.get("LOG_REPEAT_WINDOW", 60))
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", 1024 * 1024))
    # Connections (Engine.IO sessions and plain WebSockets) one process accepts from one
    # client address, and in all; past them a handshake gets 429 / 503 (app.connections).
    SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS = int(
        os.environ.get("SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS", 200))
    SOCKETIO_MAX_CONNECTIONS = int(os.environ.get("SOCKETIO_MAX_CONNECTIONS", 10_000))
    # Proxies whose X-Forwarded-For names the client for those caps ("*": any). Unset:
    # FORWARDED_ALLOW_IPS (gunicorn's), else none: REMOTE_ADDR counts.
    SOCKETIO_TRUSTED_PROXIES = _origins(
        os.environ.get("SOCKETIO_TRUSTED_PROXIES", os.environ.get("FORWARDED_ALLOW_IPS"))) or []
    # Engine.IO's ping: a client that answers none for interval + timeout is closed.
    SOCKETIO_PING_INTERVAL = float(os.environ.get("SOCKETIO_PING_INTERVAL", 25))
    SOCKETIO_PING_TIMEOUT = float(os.environ.get("SOCKETIO_PING_TIMEOUT", 20))

    # The message queue's faults and chat catch-up (app/cluster.py, app/chat/relay.py).
    # Seconds one Redis call may take (connect, publish, ping): a hung Redis costs a
    # background publisher that long, never a handler.
    SOCKETIO_QUEUE_TIMEOUT = float(os.environ.get("SOCKETIO_QUEUE_TIMEOUT", 1))
    # Seconds between two pings of Redis, and between two resubscriptions while it is away.
    SOCKETIO_QUEUE_PING_SECONDS = float(os.environ.get("SOCKETIO_QUEUE_PING_SECONDS", 1))
    SOCKETIO_QUEUE_RETRY_SECONDS = float(os.environ.get("SOCKETIO_QUEUE_RETRY_SECONDS", 1))
    # Chat: seconds between two checks of every followed stream against the database
    # (a sender that died before publishing; 0: no filler task, with or without a
    # queue, so gaps wait for the next message), and while the queue is down (chat then
    # crosses processes through the database); seconds a chat message is published
    # again while Redis is away (receivers drop repeats by seq).
    CHAT_SWEEP_SECONDS = float(os.environ.get("CHAT_SWEEP_SECONDS", 5))
    CHAT_CATCHUP_SECONDS = float(os.environ.get("CHAT_CATCHUP_SECONDS", 1))
    CHAT_REPUBLISH_SECONDS = float(os.environ.get("CHAT_REPUBLISH_SECONDS", 10))

    # Seconds one frame to a plain WebSocket (/ws/chat) may wait for its client to read
    # (its buffers full); past them it is disconnected. The others go on meanwhile.
    CHAT_WS_SEND_TIMEOUT = float(os.environ.get("CHAT_WS_SEND_TIMEOUT", 10))

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None

    USERS_PER_PAGE = 20
    API_MAX_PER_PAGE = 100
    TOKEN_LIFETIME_SECONDS = int(os.environ.get("TOKEN_LIFETIME_SECONDS", 30 * 24 * 3600))

    # Live feed: how often the follower looks for changes made outside this process,
    # how long change-log rows are kept, and how often they are pruned.
    LIVE_POLL_INTERVAL = float(os.environ.get("LIVE_POLL_INTERVAL", 0.05))
    # On PostgreSQL, while the LISTEN connection is up (NOTIFY wakes the feed at once).
    LIVE_LISTEN_POLL_INTERVAL = float(os.environ.get("LIVE_LISTEN_POLL_INTERVAL", 1.0))
    LIVE_BATCH_WINDOW = float(os.environ.get("LIVE_BATCH_WINDOW", 0.002))
    # Seconds one subscriber adds to a fan-out: during a burst, frames are spaced by
    # subscribers x this (0.2 s at 1000 subscribers), at most LIVE_MAX_FRAME_SPACING.
    # A lone change is never held back. (0.0001 measured worse at 1000 subscribers and
    # 200 changes/s: more, smaller frames, a saturated core, p99 0.4-1.0 s from run to run.)
    LIVE_FRAME_COST = float(os.environ.get("LIVE_FRAME_COST", 0.0002))
    LIVE_MAX_FRAME_SPACING = float(os.environ.get("LIVE_MAX_FRAME_SPACING", 0.2))
    LIVE_RETENTION_SECONDS = int(os.environ.get("LIVE_RETENTION_SECONDS", 7 * 24 * 3600))
    LIVE_PRUNE_INTERVAL = int(os.environ.get("LIVE_PRUNE_INTERVAL", 3600))
    LIVE_FEED_ENABLED = True
    # A full snapshot of the plain change stream holds at most this many users, and a
    # replay at most this many changes (beyond: a snapshot, or an error saying to
    # subscribe with a view).
    LIVE_SNAPSHOT_MAX_ROWS = int(os.environ.get("LIVE_SNAPSHOT_MAX_ROWS", 10_000))
    # A poll that finds more changes than this re-reads every view instead of looking
    # at each change (a bulk write).
    LIVE_VIEW_BULK_CHANGES = int(os.environ.get("LIVE_VIEW_BULK_CHANGES", 2000))
    # Seconds between two ``counts`` events (counters, chart, recent changes).
    LIVE_COUNTS_INTERVAL = float(os.environ.get("LIVE_COUNTS_INTERVAL", 0.5))
    # Subscribes per second and burst allowed to one connection.
    LIVE_SUBSCRIBE_RATE = float(os.environ.get("LIVE_SUBSCRIBE_RATE", 10))
    LIVE_SUBSCRIBE_BURST = int(os.environ.get("LIVE_SUBSCRIBE_BURST", 30))
    # How often each process closes its sockets of ended login sessions (a logout on
    # another process, read from the database: works while the message queue is down).
    SESSION_SWEEP_SECONDS = float(os.environ.get("SESSION_SWEEP_SECONDS", 1.0))
    # The garbage collector's youngest-generation threshold in the gevent server
    # (manage.py; Python's default is 700).
    GC_GEN0_THRESHOLD = int(os.environ.get("GC_GEN0_THRESHOLD", 50_000))
    # How often the playground's background task sends its server-generated event.
    DEMO_TICK_SECONDS = float(os.environ.get("DEMO_TICK_SECONDS", 10))


class DevelopmentConfig(Config):
    """Local development: debug on, but errors still get the site's error pages."""

    DEBUG = True
    PROPAGATE_EXCEPTIONS = False


class TestingConfig(Config):
    """Tests: a fresh database is given by the test fixtures."""

    TESTING = True
    # In-process tests are not monkey-patched; the follower is driven by the tests.
    SOCKETIO_ASYNC_MODE = "threading"
    LIVE_FEED_ENABLED = False
    CHAT_SWEEP_SECONDS = 0  # chat's filler too (the tests call ChatRelay.fill)
    PRESENCE_BROADCAST_COST = 0.0  # presence goes out before the event's handler returns


class ProductionConfig(Config):
    """Production: secure cookies."""

    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True


config = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
