"""The playground page."""

from flask import render_template
from flask_login import login_required

from app.extensions import socketio
from app.playground import bp


@bp.route("/playground")
@login_required
def index() -> str:
    """Flask-SocketIO's classic test page, on the ``/demo`` namespace."""
    return render_template("playground/index.html", async_mode=socketio.async_mode)
