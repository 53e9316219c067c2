"""``flask users export`` and ``flask users import``: the users list as CSV and back."""

from __future__ import annotations

import getpass

import click
from flask.cli import with_appcontext

from app.live.capture import set_change_context
from app.models import ROLES
from app.users.csvimport import import_csv
from app.users.csvio import export_csv
from app.users.listing import Listing, ListingError


@click.command("export")
@click.option("--q", default="", help="Only users whose username or email contains this.")
@click.option("--role", type=click.Choice(ROLES), help="Only users with this role.")
@click.option("--active", type=click.Choice(("true", "false")), help="Only (in)active users.")
@click.option("--sort", default="id", show_default=True,
              help="As the API's sort: fields by commas, '-' to reverse.")
@with_appcontext
def export_command(q: str, role: str | None, active: str | None, sort: str) -> None:
    """Write every matching user as CSV to stdout (streamed: any size)."""
    args = {"q": q, "sort": sort, **({"role": role} if role else {}),
            **({"active": active} if active else {})}
    try:
        listing = Listing.from_args(args, strict=True)
    except ListingError as exc:
        raise click.ClickException(str(exc)) from None
    for chunk in export_csv(listing, for_spreadsheets=True):
        click.echo(chunk, nl=False)


@click.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@with_appcontext
def import_command(file: click.utils.LazyFile) -> None:
    """Create or update users from a CSV FILE ('-': stdin): every line is checked first,
    and nothing is written when any line is bad."""
    try:
        actor: str | None = getpass.getuser()[:64]
    except (KeyError, OSError):
        actor = None
    set_change_context(actor, "cli")
    try:
        content = file.read()
    except UnicodeDecodeError:
        raise click.ClickException("the file is not UTF-8 text") from None
    result = import_csv(content)
    if result.errors:
        for number, message in result.errors:
            click.echo(f"line {number}: {message}", err=True)
        raise click.ClickException(f"{len(result.errors)} bad line(s): nothing was written")
    click.echo(f"created {result.created}, updated {result.updated}")


CSV_COMMANDS = (export_command, import_command)
