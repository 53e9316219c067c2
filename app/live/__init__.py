"""The live users table: change capture, the feed task and the /users namespace."""

from flask import Blueprint

bp = Blueprint("live", __name__)

from app.live import routes  # noqa: E402,F401
