"""The ``flask users``, ``flask tokens`` and ``flask seed`` commands, in process and for real."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.auth.tokens import issue_token, user_for_token
from app.extensions import db
from app.models import ApiToken, User, UserChange
from tests.conftest import BOTH_DATABASES, PASSWORD, ROOT

pytestmark = BOTH_DATABASES


@pytest.fixture
def instance(app: Flask, tmp_path: Path) -> Path:
    """Point the app's instance folder at the test's own directory."""
    path = tmp_path / "instance"
    path.mkdir()
    app.instance_path = str(path)
    return path


def user_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(User))


def one_line_error(result) -> str:
    """The single stderr line of a failed command (and nothing on stdout)."""
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def by_name(name: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).filter_by(username=name))


# --- users ------------------------------------------------------------------------------

def test_create_prints_the_new_id(runner):
    result = runner.invoke(args=["users", "create", "zed", "--email", "Zed@Example.com",
                                 "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    user = by_name("zed")
    assert result.stdout == f"{user.id}\n"
    assert (user.email, user.role, user.active) == ("zed@example.com", "user", True)
    assert user.check_password(PASSWORD)
    change = db.session.scalars(select(UserChange).order_by(UserChange.cursor.desc())).first()
    assert (change.op, change.origin) == ("insert", "cli")


def test_create_admin(runner):
    result = runner.invoke(args=["users", "create", "boss", "--email", "boss@example.com",
                                 "--password", PASSWORD, "--admin"])
    assert result.exit_code == 0, result.output
    assert by_name("boss").role == "admin"


@pytest.mark.parametrize(
    "name,email,password,reason",
    [
        ("admin", "new@example.com", PASSWORD, "username"),
        ("ADMIN", "new@example.com", PASSWORD, "username"),
        ("newbie", "Admin@Example.com", PASSWORD, "email"),
        ("newbie", "not-an-email", PASSWORD, "email"),
        ("newbie", "new@example.com", "", "password"),
        ("newbie", "new@example.com", "short", "password"),
        ("x", "new@example.com", PASSWORD, "username"),
        ("has space", "new@example.com", PASSWORD, "username"),
        ("newline\n", "new@example.com", PASSWORD, "username"),
    ],
)
def test_create_refuses_bad_input(runner, admin, name, email, password, reason):
    result = runner.invoke(
        args=["users", "create", name, "--email", email, "--password", password]
    )
    assert reason in one_line_error(result)
    assert user_count() == 1


def test_list_shows_a_table(runner, admin, make_user):
    make_user("bob", active=False)
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["id", "username", "email", "role", "active", "version",
                              "created_at"]
    assert [row.split()[1:5] for row in rows] == [
        ["admin", "admin@example.com", "admin", "yes"], ["bob", "bob@example.com", "user", "no"]]
    result = runner.invoke(args=["users", "list", "--role", "user"])
    assert [row.split()[1] for row in result.stdout.splitlines()[1:]] == ["bob"]


def test_set_role_activate_deactivate(runner, admin, make_user):
    make_user("bob")
    assert runner.invoke(args=["users", "set-role", "bob", "admin"]).exit_code == 0
    assert by_name("bob").role == "admin"
    assert runner.invoke(args=["users", "deactivate", "bob"]).exit_code == 0
    assert by_name("bob").active is False
    assert runner.invoke(args=["users", "activate", "bob"]).exit_code == 0
    assert by_name("bob").active is True
    assert runner.invoke(args=["users", "set-role", "bob", "root"]).exit_code == 2
    assert by_name("bob").version == 4


def test_delete_asks_unless_yes(runner, admin, make_user):
    make_user("bob")
    result = runner.invoke(args=["users", "delete", "bob"], input="n\n")
    assert result.exit_code != 0 and by_name("bob") is not None
    assert runner.invoke(args=["users", "delete", "bob"], input="y\n").exit_code == 0
    assert by_name("bob") is None
    make_user("carl")
    assert runner.invoke(args=["users", "delete", "carl", "--yes"]).exit_code == 0
    assert by_name("carl") is None


@pytest.mark.parametrize(
    "args",
    [["set-role", "admin", "user"], ["deactivate", "admin"], ["delete", "admin", "--yes"]],
)
def test_last_admin_rules(runner, admin, args):
    assert "admin" in one_line_error(runner.invoke(args=["users", *args]))
    assert by_name("admin").is_admin


@pytest.mark.parametrize(
    "args", [["set-role", "ghost", "admin"], ["activate", "ghost"], ["delete", "ghost", "--yes"]]
)
def test_unknown_user(runner, admin, args):
    assert "ghost" in one_line_error(runner.invoke(args=["users", *args]))


# --- tokens -------------------------------------------------------------------------------

def test_tokens_issue_and_revoke(runner, admin):
    result = runner.invoke(args=["tokens", "issue", "admin"])
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert result.stdout == f"{token}\n" and user_for_token(token).id == admin.id

    assert runner.invoke(args=["tokens", "revoke", token]).exit_code == 0
    assert user_for_token(token) is None
    assert "revoked" in one_line_error(runner.invoke(args=["tokens", "revoke", token]))


def test_tokens_can_be_pasted_after_a_command(admin):
    """A token never starts with '-', which click (and any shell tool) reads as an option."""
    tokens = [ApiToken.issue(admin, timedelta(hours=1))[1] for _ in range(300)]
    assert all(t.startswith("lc_") and len(t) > 40 for t in tokens)
    assert len(set(tokens)) == len(tokens)


def test_tokens_revoke_every_token_of_a_user(runner, admin, make_user):
    tokens = [issue_token(admin) for _ in range(2)]
    other = issue_token(make_user("bob"))
    result = runner.invoke(args=["tokens", "revoke", "--user", "admin"])
    assert result.exit_code == 0 and "2" in result.stdout
    assert [user_for_token(t) for t in tokens] == [None, None]
    assert user_for_token(other) is not None
    assert runner.invoke(args=["tokens", "revoke"]).exit_code == 2
    assert runner.invoke(args=["tokens", "revoke", other, "--user", "bob"]).exit_code == 2


def test_commands_name_users_in_any_case(runner, admin, make_user):
    bob = make_user("bob")
    token = runner.invoke(args=["tokens", "issue", "ADMIN"]).stdout.strip()
    assert user_for_token(token).id == admin.id
    assert runner.invoke(args=["users", "set-role", "BoB", "admin"]).exit_code == 0
    db.session.refresh(bob)
    assert bob.role == "admin"


def test_tokens_issue_refuses_unknown_and_inactive_users(runner, admin, make_user):
    make_user("bob", active=False)
    assert "ghost" in one_line_error(runner.invoke(args=["tokens", "issue", "ghost"]))
    assert "deactivated" in one_line_error(runner.invoke(args=["tokens", "issue", "bob"]))
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0


# --- seed and shell -----------------------------------------------------------------------

def test_seed_if_empty_twice(runner, instance: Path):
    first = runner.invoke(args=["seed", "--if-empty", "--count", "5"])
    assert first.exit_code == 0, first.output
    users = db.session.scalars(select(User)).all()
    assert len(users) == 6
    assert {u.role for u in users} == {"admin", "user"} and {u.active for u in users} == {
        True, False}

    saved = instance / "demo_credentials.txt"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    password = saved.read_text().split("admin / ")[1].split()[0]
    assert password in first.stdout
    assert by_name("admin").check_password(password) and by_name("admin").is_admin

    second = runner.invoke(args=["seed", "--if-empty", "--count", "5"])
    assert second.exit_code == 0
    assert user_count() == 6
    assert saved.read_text().strip() in second.stdout


def test_seed_if_empty_without_saved_credentials(runner, admin, instance: Path):
    result = runner.invoke(args=["seed", "--if-empty"])
    assert result.exit_code == 0 and "nothing seeded" in result.stdout
    assert user_count() == 1 and not (instance / "demo_credentials.txt").exists()


def test_seed_again_adds_demo_users_with_new_names(runner, instance: Path):
    assert runner.invoke(args=["seed", "--count", "2"]).exit_code == 0
    saved = (instance / "demo_credentials.txt").read_text()
    assert runner.invoke(args=["seed", "--count", "2"]).exit_code == 0
    assert user_count() == 5
    assert (instance / "demo_credentials.txt").read_text() == saved


def test_shell_context(app: Flask):
    assert {"db", "User", "ApiToken", "UserChange", "ChatMessage"} <= set(
        app.make_shell_context())


# --- a real `flask` process -------------------------------------------------------------

def run_flask(db_url: str, instance: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m flask ...`` from the repository root, with no --app and no FLASK_APP."""
    env = {key: value for key, value in os.environ.items() if key != "FLASK_APP"}
    env.update(DATABASE_URL=db_url, INSTANCE_PATH=str(instance), FLASK_CONFIG="development")
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_real_flask_process(db_url: str, admin, tmp_path: Path):
    instance = tmp_path / "instance"
    created = run_flask(db_url, instance, "users", "create", "zed", "--email",
                        "zed@example.com", "--password", PASSWORD)
    assert created.returncode == 0, created.stderr
    user = by_name("zed")
    assert created.stdout == f"{user.id}\n"

    duplicate = run_flask(db_url, instance, "users", "create", "Zed", "--email",
                          "other@example.com", "--password", PASSWORD)
    assert duplicate.returncode != 0 and duplicate.stdout == ""
    assert len(duplicate.stderr.strip().splitlines()) == 1 and "username" in duplicate.stderr
    empty = run_flask(db_url, instance, "users", "create", "amy", "--email",
                      "amy@example.com", "--password", "")
    assert empty.returncode != 0 and empty.stdout == ""
    assert len(empty.stderr.strip().splitlines()) == 1 and "password" in empty.stderr
    assert user_count() == 2

    issued = run_flask(db_url, instance, "tokens", "issue", "zed")
    assert issued.returncode == 0, issued.stderr
    assert len(issued.stdout.splitlines()) == 1
    assert user_for_token(issued.stdout.strip()).id == user.id


def test_a_user_deleted_while_the_cli_asks_is_a_clear_error(db_url: str, make_user,
                                                            tmp_path: Path):
    """``flask users delete bob`` loads bob, then asks; someone else deletes bob meanwhile:
    the command exits non-zero with one line saying so, not a traceback."""
    bob = make_user("bob")
    env = {key: value for key, value in os.environ.items() if key != "FLASK_APP"}
    env.update(DATABASE_URL=db_url, INSTANCE_PATH=str(tmp_path / "instance"),
               FLASK_CONFIG="development")
    proc = subprocess.Popen([sys.executable, "-m", "flask", "users", "delete", "bob"],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        asked = ""
        while "Delete user bob?" not in asked:
            char = proc.stderr.read(1)
            assert char, f"the command ended before asking: {asked}"
            asked += char
        db.session.delete(db.session.get(User, bob.id))
        db.session.commit()
        out, err = proc.communicate("y\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and out == ""
    assert err.strip().splitlines() == [f"Error: user {bob.id} was deleted"], err
