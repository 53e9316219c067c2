"""The dashboard chart's data over HTTP, and front-end libraries served from node_modules."""

from pathlib import Path

from flask import abort, jsonify, send_from_directory
from flask_login import login_required

from app.live import bp
from app.live.minutes import per_minute
from app.models import utcnow

ROOT = Path(__file__).resolve().parents[2]
# Only these files, each from its npm package's dist folder (never committed).
VENDOR = {
    "socket.io.esm.min.js": ROOT / "node_modules/socket.io-client/dist",
    "socket.io.esm.min.js.map": ROOT / "node_modules/socket.io-client/dist",
    "uPlot.esm.js": ROOT / "node_modules/uplot/dist",
    "uPlot.min.css": ROOT / "node_modules/uplot/dist",
}


@bp.route("/vendor/<name>")
def vendor(name: str):
    folder = VENDOR.get(name)
    if folder is None:
        abort(404)
    return send_from_directory(folder, name, max_age=3600)


@bp.route("/live/stats")
@login_required
def stats():
    """The changes per minute over the last hour, for the dashboard's chart."""
    now = utcnow()
    return jsonify(now=now.isoformat(), per_minute=per_minute(now))
