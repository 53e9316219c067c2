"""playground."""

from flask import Blueprint

bp = Blueprint("playground", __name__)

from app.playground import routes  # noqa: E402,F401
