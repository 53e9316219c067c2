"""The ``flask`` commands: ``users``, ``tokens`` and ``seed``, plus the shell context.

Every error is one line on stderr and a non-zero exit; writes are recorded in the
users change log as made by the OS user through the ``cli``.
"""

from __future__ import annotations

import functools
import getpass
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select

from app.auth.tokens import issue_token, revoke_token, revoke_user_tokens
from app.demo_credentials import saved_credentials
from app.extensions import db
from app.live.capture import set_change_context
from app.models import ROLES, ApiToken, ChatMessage, User, UserChange
from app.users.csv_cli import CSV_COMMANDS
from app.users.service import (
    DuplicateError,
    ServiceError,
    UserError,
    create_user,
    delete_user,
    update_user,
    user_named,
)

CREDENTIALS_FILE = "demo_credentials.txt"
DEMO_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "wendy", "xavier", "yvonne", "zoe", "oscar", "quentin",
)


class CliError(click.ClickException):
    """A one-line error on stderr and exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ServiceGroup(AppGroup):
    """A command group whose commands end a service error (``ServiceError``: bad input,
    a duplicate, a stale or deleted user, the last admin) as a CliError; the session is
    rolled back, so nothing is written."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], click.Command]:
        register = super().command(*args, **kwargs)

        def decorator(callback: Callable) -> click.Command:
            @functools.wraps(callback)
            def run(*a: Any, **kw: Any) -> Any:
                try:
                    return callback(*a, **kw)
                except ServiceError as exc:
                    db.session.rollback()
                    raise CliError(str(exc)) from None

            return register(run)

        return decorator


def _cli_context() -> None:
    """Record the writes that follow as made by the OS user through the CLI."""
    try:
        actor: str | None = getpass.getuser()[:64]
    except (KeyError, OSError):  # no passwd entry, e.g. in a container
        actor = None
    set_change_context(actor, "cli")


def _user(name: str) -> User:
    user = user_named(name)
    if user is None:
        raise CliError(f"no user named {name!r}")
    return user


def _change(name: str, **fields: object) -> User:
    """Apply ``fields`` to the user ``name`` through the service."""
    _cli_context()
    return update_user(_user(name), fields, None)


@click.group("users", cls=ServiceGroup)
def users_cli() -> None:
    """Create, list and change users."""


@users_cli.command("create")
@click.argument("name")
@click.option("--email", required=True, help="A valid address; stored lower-case.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 8 characters (prompted for when omitted).")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
def create_command(name: str, email: str, password: str, admin: bool) -> None:
    """Create user NAME and print its id."""
    _cli_context()
    data = {"username": name, "email": email, "password": password,
            "role": "admin" if admin else "user"}
    click.echo(create_user(data).id)


@users_cli.command("list")
@click.option("--role", type=click.Choice(ROLES), help="Only users with this role.")
def list_command(role: str | None) -> None:
    """Print every user as a table."""
    query = select(User).order_by(User.id)
    if role:
        query = query.filter_by(role=role)
    rows = [("id", "username", "email", "role", "active", "version", "created_at")]
    rows += [
        (str(u.id), u.username, u.email, u.role, "yes" if u.active else "no", str(u.version),
         u.created_at.strftime("%Y-%m-%d %H:%M"))
        for u in db.session.scalars(query)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())


@users_cli.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
def set_role_command(name: str, role: str) -> None:
    """Give user NAME the ROLE admin or user."""
    _change(name, role=role)
    click.echo(f"{name} is now {role}.")


@users_cli.command("activate")
@click.argument("name")
def activate_command(name: str) -> None:
    """Let user NAME log in again."""
    _change(name, active=True)
    click.echo(f"{name} is active.")


@users_cli.command("deactivate")
@click.argument("name")
def deactivate_command(name: str) -> None:
    """Stop user NAME from logging in or using API tokens."""
    _change(name, active=False)
    click.echo(f"{name} is deactivated.")


@users_cli.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_command(name: str, yes: bool) -> None:
    """Delete user NAME and their tokens."""
    user = _user(name)
    if not yes:
        click.confirm(f"Delete user {name}?", abort=True, err=True)
    _cli_context()
    delete_user(user)
    click.echo(f"Deleted {name}.")


@click.group("tokens", cls=ServiceGroup)
def tokens_cli() -> None:
    """Issue and revoke API tokens."""


@tokens_cli.command("issue")
@click.argument("name")
def issue_command(name: str) -> None:
    """Print a new API token for user NAME, alone on stdout."""
    user = _user(name)
    if not user.is_active:
        raise CliError(f"user {name!r} is deactivated; activate it first")
    click.echo(issue_token(user))


@tokens_cli.command("revoke")
@click.argument("token", required=False)
@click.option("--user", "name", help="Revoke every token of this user instead.")
def revoke_command(token: str | None, name: str | None) -> None:
    """Revoke TOKEN, or with --user every token of a user."""
    if (token is None) == (name is None):
        raise click.UsageError("give either TOKEN or --user NAME")
    if name is not None:
        click.echo(f"Revoked {revoke_user_tokens(_user(name))} token(s) of {name}.")
    elif revoke_token(token):
        click.echo("Revoked 1 token.")
    else:
        raise CliError("unknown or already revoked token")


@click.command("seed")
@click.option("--if-empty", is_flag=True,
              help="When users exist, write nothing and show the saved credentials.")
@click.option("--count", default=25, show_default=True, type=click.IntRange(0, 10_000),
              help="How many demo users besides the admin.")
@with_appcontext
def seed_command(if_empty: bool, count: int) -> None:
    """Create demo users: an admin "admin" with a random password, and COUNT others.

    The credentials are printed and saved to demo_credentials.txt in the instance folder.
    """
    path = Path(current_app.instance_path) / CREDENTIALS_FILE
    if if_empty and db.session.scalar(select(func.count()).select_from(User)):
        click.echo(saved_credentials(path))
        return
    _cli_context()
    taken = set(db.session.scalars(select(func.lower(User.username))))
    lines = []
    if "admin" not in taken:
        password = secrets.token_urlsafe(12)
        try:
            create_user({"username": "admin", "email": "admin@example.com",
                         "password": password, "role": "admin"})
        except UserError as exc:
            db.session.rollback()
            raise CliError(f"cannot create the admin: {exc}") from None
        lines.append(f"Admin login: admin / {password}")
    password = secrets.token_urlsafe(12)
    created = _create_demo_users(count, taken, password)
    lines.append(f"The {created} other demo users share the password: {password}")
    text = "\n".join(lines)
    if "admin" not in taken:
        _write_private(path, text + "\n")
        text += f"\n(saved in {path})"
    click.echo(text)


def _create_demo_users(count: int, taken: set[str], password: str) -> int:
    """Create ``count`` users with free names; some admins, some deactivated."""
    created = index = 0
    while created < count:
        base = DEMO_NAMES[index % len(DEMO_NAMES)]
        round_ = index // len(DEMO_NAMES)
        name = base if round_ == 0 else f"{base}{round_ + 1}"
        index += 1
        if name in taken:
            continue
        data = {"username": name, "email": f"{name}@example.com", "password": password,
                "role": "admin" if index % 8 == 4 else "user", "active": index % 5 != 0}
        try:
            create_user(data)
        except DuplicateError:  # the email belongs to someone else
            db.session.rollback()
            continue
        created += 1
    return created


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may predate this run with wider permissions
    with os.fdopen(fd, "w") as f:
        f.write(text)


def shell_context() -> dict[str, object]:
    """The names ``flask shell`` starts with."""
    return {"db": db, "User": User, "ApiToken": ApiToken, "UserChange": UserChange,
            "ChatMessage": ChatMessage}


def register(app: Flask) -> None:
    """Add the command groups and the shell context to ``app``."""
    for command in CSV_COMMANDS:
        users_cli.add_command(command)
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(seed_command)
    app.shell_context_processor(shell_context)
