"""Shared fixtures: one app per test on a fresh, migrated database.

SQLite: the migrations run once per session into a template file, copied per test.
PostgreSQL (when DATABASE_URL points at one): a migrated template database, cloned
per test with CREATE DATABASE ... TEMPLATE. Outside CI, PostgreSQL and Redis tests
skip with the reason; in CI (CI=true) an unreachable server fails them instead.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask, g, request_started
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from app import create_app
from app.auth.tokens import issue_token
from app.extensions import db, socketio
from app.models import User
from app.users.service import create_user
from config import database_url
from tests.cluster_helpers import Cluster
from tests.servers import ROOT, NginxProcess, RedisServer, ServerProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
PASSWORD = "correct-horse-battery"
_counter = itertools.count()


def unavailable(reason: str) -> None:
    """Skip (outside CI) or fail (in CI) a test whose service is missing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    _migrate(f"sqlite:///{path}")
    return path


def _pg_url_for(name: str) -> str:
    """DATABASE_URL with another database name."""
    url = make_url(database_url(PG_URL)).set(database=name)
    return url.render_as_string(hide_password=False)


def _pg_exec(sql: str) -> None:
    """Run one statement on the server's maintenance connection (autocommit)."""
    import psycopg

    url = make_url(database_url(PG_URL)).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True,
                         connect_timeout=5) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if not PG_URL.startswith(("postgresql", "postgres:")):
        unavailable("PostgreSQL tests need DATABASE_URL=postgresql://... (make test sets none)")
    name = f"livecrud_tpl_{os.getpid()}"
    try:
        _pg_exec(f"DROP DATABASE IF EXISTS {name}")
        _pg_exec(f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001 - any connection failure means "unavailable"
        unavailable(f"PostgreSQL unreachable at DATABASE_URL: {exc}")
    _migrate(_pg_url_for(name))
    yield name
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The name of a fresh, empty (unmigrated) PostgreSQL database."""
    if not PG_URL.startswith(("postgresql", "postgres:")):
        unavailable("PostgreSQL tests need DATABASE_URL=postgresql://...")
    name = f"livecrud_t{os.getpid()}_{next(_counter)}"
    try:
        _pg_exec(f"CREATE DATABASE {name}")
    except Exception as exc:  # noqa: BLE001
        unavailable(f"PostgreSQL unreachable at DATABASE_URL: {exc}")
    yield _pg_url_for(name)
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database URL; ``BOTH_DATABASES`` runs a test on PostgreSQL too."""
    if request.param == "sqlite":
        path = tmp_path / "app.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"livecrud_t{os.getpid()}_{next(_counter)}"
    _pg_exec(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield _pg_url_for(name)
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


BOTH_DATABASES = pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _fresh_request(sender: Flask, **extra: object) -> None:
    g.__dict__.clear()
    db.session.expire_all()  # a production request starts with an empty session


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The app on a fresh database, with an app context pushed for the test's own code.

    Requests made while that context is pushed would share its ``g`` (Flask-Login's
    cached user, Flask-WTF's token) and its session's loaded objects, so each request
    starts with a fresh ``g`` and nothing loaded, as in production.
    """
    app = create_app(
        "testing",
        {"SQLALCHEMY_DATABASE_URI": db_url, "SECRET_KEY": "test-secret", "SERVER_NAME": None},
    )
    request_started.connect(_fresh_request, app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    """Create a user through the service (password ``PASSWORD``)."""

    def make(username: str, role: str = "user", active: bool = True, **extra) -> User:
        email = extra.pop("email", f"{username}@example.com")
        return create_user(
            {"username": username, "email": email, "password": PASSWORD, "role": role,
             "active": active, **extra}
        )

    return make


@pytest.fixture
def admin(make_user) -> User:
    return make_user("admin", role="admin")


@pytest.fixture
def admin_client(client: FlaskClient, admin: User) -> FlaskClient:
    """A test client logged in as the admin."""
    assert login(client, "admin").status_code == 302
    return client


@pytest.fixture
def bob(make_user) -> User:
    return make_user("bob")


@pytest.fixture
def user_client(app: Flask, bob: User) -> FlaskClient:
    """A second test client, logged in as bob (not an admin)."""
    other = app.test_client()
    assert login(other, "bob").status_code == 302
    return other


@pytest.fixture
def sockets(app: Flask):
    """Open Flask-SocketIO test clients with a user's API token; disconnected at the end."""
    opened = []

    def open_socket(namespace: str, user: User, **kwargs):
        kwargs.setdefault("auth", {"token": issue_token(user)})
        g.__dict__.clear()  # as for a request: no cached login of an earlier one
        sio = socketio.test_client(app, namespace=namespace, **kwargs)
        opened.append((sio, namespace))
        return sio

    yield open_socket
    for sio, namespace in opened:
        if sio.is_connected(namespace):
            sio.disconnect(namespace=namespace)


def csrf_token(client: FlaskClient, url: str = "/login") -> str:
    """The CSRF token a page hands out (the hidden input or the meta tag)."""
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD):
    """Log in through the real form, CSRF token included."""
    token = csrf_token(client, "/login")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


# --- a real server process -------------------------------------------------------------

@pytest.fixture
def server_factory(db_url: str, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real server processes on the test's database; all stopped at the end."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, flask_run: bool = False) -> ServerProcess:
        server = ServerProcess(db_url, tmp_path / "instance", env, flask_run).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server(server_factory) -> ServerProcess:
    return server_factory()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private ``redis-server`` processes (extra arguments: ``--requirepass``...);
    all killed at the end. Skips (fails in CI) without the binary."""
    if RedisServer.BINARY is None:
        unavailable("this test needs redis-server (apt-get install redis-server)")
    started: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", *args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """A Redis URL for message-queue tests: a private redis-server when the binary is
    here, else REDIS_URL (shared: use ``queue_env``'s channel), else skip (fail in CI)."""
    if RedisServer.BINARY is not None:
        return request.getfixturevalue("redis_server")().url()
    if not REDIS_URL:
        unavailable("Redis tests need redis-server or REDIS_URL=redis://...")
    return REDIS_URL


@pytest.fixture
def queue_env(redis_url: str) -> dict[str, str]:
    """Server settings for a message queue of the test's own (a channel nobody else uses)."""
    return {"SOCKETIO_MESSAGE_QUEUE": redis_url,
            "SOCKETIO_CHANNEL": f"livecrud-test-{os.getpid()}-{next(_counter)}"}


@pytest.fixture
def nginx_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start nginx in front of two gunicorn processes on a database URL with server
    settings (``queue_env``), over TCP or (``unix=True``) Unix sockets; all stopped at the
    end. Skips (fails in CI) without nginx."""
    if NginxProcess.BINARY is None:
        unavailable("nginx tests need Debian's nginx (apt-get install nginx)")
    started: list[Cluster] = []

    def start(db_url: str, env: dict[str, str], unix: bool = False) -> Cluster:
        cluster = Cluster(db_url, env, tmp_path / f"cluster{len(started)}", unix=unix)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.stop()


# --- a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """Debian's headless chromium driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        unavailable("browser tests need Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Open pages in fresh browser contexts (separate cookies); closed at the end."""
    contexts = []

    def open_page():
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def browser_login(page, server: ServerProcess, username: str, password: str = PASSWORD) -> None:
    """Log in through the real login form in the browser."""
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
