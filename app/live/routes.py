"""The dashboard chart's data over HTTP, and front-end libraries served from node_modules."""

from datetime import timedelta
from pathlib import Path

from flask import abort, jsonify, send_from_directory
from flask_login import login_required
from sqlalchemy import select

from app.extensions import db
from app.live import bp
from app.models import UserChange, utcnow

ROOT = Path(__file__).resolve().parents[2]
# Only these files, each from its npm package's dist folder (never committed).
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


@bp.route("/live/stats")
@login_required
def stats():
    """The changes per minute over the last hour, for the dashboard's chart."""
    now = utcnow()
    per_minute = [0] * 60
    recent = select(UserChange.created_at).where(UserChange.created_at >= now - timedelta(hours=1))
    for at in db.session.scalars(recent):
        age = int((now - at).total_seconds() // 60)
        if 0 <= age < 60:
            per_minute[59 - age] += 1
    return jsonify(now=now.isoformat(), per_minute=per_minute)
