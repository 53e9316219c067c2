"""Login and logout pages."""

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user

from app.auth import bp
from app.auth.forms import LoginForm
from app.auth.sessions import end_session, session_user, start_session
from app.auth.sockets import disconnect_session
from app.extensions import login_manager
from app.inputs import MAX_INT
from app.models import User
from app.users.service import user_named


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a login session ``"<user id>:<key>"`` that has not ended."""
    user_id, _, key = session_id.partition(":")
    if not (user_id.isdigit() and key) or int(user_id) > MAX_INT:
        return None
    return session_user(int(user_id), key)


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
        user = user_named(form.username.data)
        if user is None or not user.check_password(form.password.data):
            form.password.errors.append("Invalid username or password.")
        elif not user.is_active:
            form.username.errors.append("This account is deactivated.")
        else:
            start_session(user, remember=form.remember.data)
            flash(f"Welcome, {user.username}.", "success")
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Log out (a POST with CSRF): this login session ends (a copied cookie too) and the
    connections opened with it close, on every process. The user's other sessions and
    API tokens go on (``/account`` ends them)."""
    key = current_user.login_key
    end_session(key)
    disconnect_session(key)
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
