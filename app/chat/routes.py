"""The chat page and the plain WebSocket endpoint."""

from flask import render_template
from flask_login import current_user, login_required

from app.chat import bp, bridge
from app.chat.rules import MAX_TEXT


@bp.route("/chat")
@login_required
def index() -> str:
    """The chat page: rooms, presence and private messages over Socket.IO."""
    return render_template("chat/index.html", username=current_user.username, max_text=MAX_TEXT)


# Werkzeug routes an upgrade request only to a rule marked websocket=True; the plain
# rule lets other requests reach the view for its clear 400.
@bp.route("/ws/chat/<room>", websocket=True)
@bp.route("/ws/chat/<room>")
def websocket(room: str):
    """A plain WebSocket into a chat room (token auth; see docs/realtime.md)."""
    return bridge.serve(room)
