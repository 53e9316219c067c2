"""The JSON API under /api: bearer-token auth, users CRUD, token issue and revoke."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from app.api import bulk, errors, history, routes, tokens  # noqa: E402,F401
