"""The read-only page of one user (what non-admins get instead of the edit form)."""

from __future__ import annotations

from flask import render_template
from flask_login import login_required

from app.extensions import db
from app.models import User
from app.users import bp


@bp.route("/users/<int(max=2147483647):id>")
@login_required
def detail(id: int) -> str:
    """One user's fields, with links to its history (and, for admins, its edit form)."""
    return render_template("users/detail.html", user=db.get_or_404(User, id))
