"""Stub."""
from flask_login import login_required

from app.users import bp


@bp.route("/")
@login_required
def index():
    return "users"
