"""The Docker image's start command, run as the Dockerfile says (its ENTRYPOINT, its ENV)
but without Docker: on a fresh database it migrates, then serves pages and Socket.IO.

tests/test_nginx.py and tests/test_shutdown.py run deploy/entrypoint.sh on a migrated
database with SKIP_DB_UPGRADE=1; this is the image's own start, migration included."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from config import database_url
from tests.live_client import LiveClient
from tests.servers import ROOT, ServerProcess

pytestmark = pytest.mark.server


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's ENTRYPOINT (exec form) and every variable its ENV lines set."""
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    entrypoint, env = None, {}
    for line in lines:
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    assert entrypoint, "no ENTRYPOINT in the Dockerfile"
    return entrypoint, env


class ImageProcess(ServerProcess):
    """The Dockerfile's ENTRYPOINT with the Dockerfile's ENV and nothing else of this
    machine's environment but PATH (the image's python is this .venv's); the instance
    folder (the image's volume), the address and the port are the test's own."""

    START_TIMEOUT = 90.0  # `flask db upgrade` first

    def __init__(self, instance: Path, db_url: str | None) -> None:
        super().__init__(db_url or "", instance)
        self.entrypoint, self.image_env = dockerfile()

    @property
    def env(self) -> dict[str, str]:
        env = {**self.image_env, "INSTANCE_PATH": str(self.instance), "HOST": "127.0.0.1",
               "PORT": str(self.port), "HOME": str(self.instance),
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        if self.db_url:  # else the image's default: SQLite in the instance folder
            env["DATABASE_URL"] = self.db_url
        return env

    def argv(self) -> list[str]:
        return [str(ROOT / self.entrypoint[0]), *self.entrypoint[1:]]

    def run(self, *command: str) -> str:
        """A one-off job through the entrypoint (``docker run IMAGE flask ...``)."""
        done = subprocess.run([*self.argv(), *command], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout


def schema_version(url: str) -> str:
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest) -> str | None:
    """None: the image's default database (a new SQLite file); else an empty PostgreSQL one."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_database")


def test_the_images_start_command_migrates_a_fresh_database_and_serves(fresh_database,
                                                                       tmp_path):
    server = ImageProcess(tmp_path / "data", fresh_database)
    assert server.image_env["FLASK_CONFIG"] == "production"
    assert "SKIP_DB_UPGRADE" not in server.image_env
    server.start()
    try:
        url = fresh_database or f"sqlite:///{tmp_path / 'data' / 'livecrud.sqlite'}"
        head = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
        assert schema_version(url) == head

        page = requests.get(f"{server.url}/login", timeout=10)
        assert page.status_code == 200
        assert 'name="username"' in page.text and 'name="csrf_token"' in page.text

        server.run("flask", "users", "create", "carol", "--email", "carol@example.com",
                   "--password", "long-enough-pw", "--admin")
        token = server.run("flask", "tokens", "issue", "carol").strip()
        client = LiveClient(server.url, token).connect()
        try:
            ack = client.subscribe(None)
            assert [row["username"] for row in ack["rows"]] == ["carol"]
        finally:
            client.close()
    finally:
        server.stop()
    assert server.proc.returncode == 0  # SIGTERM: a clean exit
