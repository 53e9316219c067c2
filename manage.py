"""Entry point: gevent-patched app for `flask` and the production-grade `run` command."""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402

import click  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import socketio  # noqa: E402
from app.server import serve  # noqa: E402

app = create_app()

# A server holding thousands of connections keeps millions of objects alive. With
# Python's default thresholds the short-lived objects of one fan-out to every client
# outlive the young generations and soon set off a full collection of all of them: a
# pause of 300 ms and more at 5000 clients. A larger youngest generation lets them die
# young; what start-up made lives as long as the process and is left out of every scan.
gc.set_threshold(app.config["GC_GEN0_THRESHOLD"], *gc.get_threshold()[1:])
gc.freeze()


@click.group()
def cli() -> None:
    """LiveCRUD management commands."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Serve the app with gevent and gevent-websocket; SIGTERM shuts down cleanly."""
    click.echo(f"LiveCRUD on http://{host}:{port} (async mode: {socketio.async_mode})")
    app.extensions["live_feed"].start()
    serve(app, host, port)


if __name__ == "__main__":
    cli()
