"""Entry point: gevent-patched app for `flask` and the production-grade `run` command."""

from gevent import monkey

monkey.patch_all()

import click  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import socketio  # noqa: E402

app = create_app()


@click.group()
def cli() -> None:
    """LiveCRUD management commands."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Serve the app with gevent and gevent-websocket."""
    click.echo(f"LiveCRUD on http://{host}:{port} (async mode: {socketio.async_mode})")
    socketio.run(app, host=host, port=port, debug=False, use_reloader=False, log_output=False)


if __name__ == "__main__":
    cli()
