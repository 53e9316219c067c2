"""Login and logout pages."""

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from app.auth import bp
from app.auth.forms import LoginForm
from app.auth.sessions import end_sessions
from app.auth.sockets import disconnect_everywhere
from app.extensions import db, login_manager
from app.inputs import MAX_INT
from app.models import User


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a session ``"<id>:<epoch>"``, if that epoch is still the user's."""
    user_id, _, epoch = session_id.partition(":")
    if not (user_id.isdigit() and epoch.isdigit()) or int(user_id) > MAX_INT:
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.session_epoch == int(epoch) else None


@bp.before_app_request
def end_inactive_session() -> None:
    """A user deactivated while logged in is logged out at their next request (health
    checks, static files and the token-only API need no login: they never ask)."""
    if request.blueprint in ("health", "api") or request.endpoint == "static":
        return
    if current_user.is_authenticated and not current_user.is_active:
        logout_user()


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; log the user in on a valid post."""
    if current_user.is_authenticated:
        return redirect(url_for("users.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(User).filter_by(username=form.username.data))
        if user is None or not user.check_password(form.password.data):
            form.password.errors.append("Invalid username or password.")
        elif not user.is_active:
            form.username.errors.append("This account is deactivated.")
        else:
            login_user(user, remember=form.remember.data)
            flash(f"Welcome, {user.username}.", "success")
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Log out (a POST with CSRF): every session of this user ends (a copied cookie too)
    and its open connections close, on every process (through the message queue).
    """
    disconnect_everywhere(current_user.id)
    end_sessions(current_user.id)
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    """Only follow a relative ``next`` URL on this site."""
    parts = urlsplit(target or "")
    if target and not parts.netloc and not parts.scheme and target.startswith("/") \
            and not target.startswith("//"):
        return target
    return url_for("users.index")
