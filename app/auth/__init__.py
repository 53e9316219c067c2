"""Login, logout and API-token lookup."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import account, routes  # noqa: E402,F401  (registers the views on bp)
