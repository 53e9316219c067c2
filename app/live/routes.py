"""Front-end libraries installed from npm, served from node_modules (never committed)."""

from pathlib import Path

from flask import abort, send_from_directory

from app.live import bp

ROOT = Path(__file__).resolve().parents[2]
# Only these files, each from its package's dist folder.
VENDOR = {
    "socket.io.esm.min.js": ROOT / "node_modules/socket.io-client/dist",
    "socket.io.esm.min.js.map": ROOT / "node_modules/socket.io-client/dist",
}


@bp.route("/vendor/<name>")
def vendor(name: str):
    folder = VENDOR.get(name)
    if folder is None:
        abort(404)
    return send_from_directory(folder, name, max_age=3600)
