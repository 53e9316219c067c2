"""``/account``: one's own email and password, and ending one's other sessions and tokens."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.auth import bp
from app.auth.forms import AccountForm, RevokeForm
from app.auth.sessions import end_sessions, remembered, start_session
from app.auth.sockets import disconnect_everywhere
from app.auth.tokens import revoke_user_tokens
from app.extensions import db
from app.live.capture import set_change_context
from app.models import User
from app.users.service import StaleVersionError, UserError, update_user


def _page(form: AccountForm, status: int = 200) -> tuple[str, int]:
    return render_template("auth/account.html", form=form, revoke=RevokeForm()), status


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> str | Response | tuple[str, int]:
    """Show and change one's own email and password (the current password required)."""
    user: User = current_user._get_current_object()
    form = AccountForm()
    if not form.is_submitted():
        form.email.data = user.email
        return _page(form)
    if not form.validate():
        return _page(form, 400)
    if not user.check_password(form.current_password.data):
        form.current_password.errors.append("This is not your current password.")
        return _page(form, 400)
    changes = {}
    if (email := (form.email.data or "").strip()) and email.lower() != user.email:
        changes["email"] = email
    if form.new_password.data:
        changes["password"] = form.new_password.data
    if not changes:
        flash("Nothing to change.", "info")
        return redirect(url_for("auth.account"))
    set_change_context(user.username, "ui")
    try:
        update_user(user, changes, None)
    except (UserError, StaleVersionError) as exc:
        db.session.rollback()
        errors = getattr(exc, "errors", {"_schema": [str(exc)]})
        for name, messages in errors.items():
            field = form.new_password if name == "password" else form.email
            field.errors.extend(messages)
        return _page(form, getattr(exc, "status", 409))
    if "password" in changes:
        # The new password ended every session: this browser carries on in a new one.
        start_session(user, remember=remembered())
        flash("Password changed: your other sessions are logged out.", "success")
    if "email" in changes:
        flash(f"Email changed to {user.email}.", "success")
    return redirect(url_for("auth.account"))


@bp.post("/account/revoke")
@login_required
def revoke_everywhere() -> Response:
    """End every other login session and connection, and revoke every API token."""
    if not RevokeForm().validate_on_submit():
        flash("The form was outdated: reload the page and try again.", "error")
        return redirect(url_for("auth.account"))
    user: User = current_user._get_current_object()
    end_sessions(user.id)
    count = revoke_user_tokens(user)
    disconnect_everywhere(user.id)  # this page's own sockets too: it reloads
    db.session.refresh(user)
    start_session(user, remember=remembered())  # this browser carries on in a new session
    flash(f"Your other sessions are logged out and {count} API token"
          f"{'' if count == 1 else 's'} revoked.", "success")
    return redirect(url_for("auth.account"))
