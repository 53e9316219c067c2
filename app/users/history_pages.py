"""The history page of a user (also of a deleted one) and its Revert buttons."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.extensions import db
from app.inputs import MAX_CURSOR, bounded_int
from app.live.capture import set_change_context
from app.live.changelog import WATCHED_FIELDS, change_payload
from app.models import User
from app.security import admin_required
from app.users import bp
from app.users.forms import RevertForm
from app.users.history import NoSuchChangeError, changes_of, has_changes, revert
from app.users.service import LastAdminError, StaleVersionError, UserError, UserGoneError

HISTORY_PAGE = 50  # changes a page shows
LAST_ADMIN = ("That would leave no active admin: make another user an active admin first. "
              "Nothing was changed.")


def entry(change: dict[str, Any]) -> dict[str, Any]:
    """A change as the page lists it: ``fields`` as ``(name, before, after)``."""
    before, row = change["before"] or {}, change["row"] or {}
    if change["op"] == "insert":
        fields = [(f, None, row[f]) for f in WATCHED_FIELDS]
    elif change["op"] == "delete":
        fields = [(f, before.get(f), None) for f in WATCHED_FIELDS]
    else:
        fields = [(f, before[f], row[f]) for f in WATCHED_FIELDS if f in before]
    return {**change, "fields": fields}


@bp.route("/users/<int(max=2147483647):id>/history")
@login_required
def history(id: int) -> str:
    """The user's retained changes, newest first, ``HISTORY_PAGE`` a page (``?before=``
    a cursor: the older ones), with a Revert form per entry."""
    # Pages are lenient: a bad cursor shows the newest.
    before = bounded_int(request.args.get("before"), MAX_CURSOR)
    changes = changes_of(id, before=before, limit=HISTORY_PAGE + 1, newest_first=True)
    if not changes and not has_changes(id):
        abort(404)
    older = changes[HISTORY_PAGE - 1].cursor if len(changes) > HISTORY_PAGE else None
    entries = [entry(change_payload(c)) for c in changes[:HISTORY_PAGE]]
    user = db.session.get(User, id)
    name = user.username if user else next(
        ((e["row"] or e["before"])["username"] for e in entries if e["row"] or e["before"]),
        f"user #{id}")
    return render_template("users/history.html", user=user, user_id=id, name=name,
                           entries=entries, form=RevertForm(), page_size=HISTORY_PAGE,
                           older=older, newest=before is not None,
                           can_revert=current_user.is_admin)


@bp.post("/users/<int(max=2147483647):id>/revert")
@admin_required
def revert_page(id: int) -> Response:
    """Revert the user to one entry of its history, then show the history again."""
    form = RevertForm()
    back = redirect(url_for("users.history", id=id))
    if not form.validate_on_submit():
        flash("The revert form was not valid (reload the page and try again).", "error")
        return back
    set_change_context(current_user.username, "ui")
    version = int(form.version.data) if form.version.data else None
    cursor = int(form.cursor.data)
    try:
        user = revert(id, cursor, version)
    except StaleVersionError as exc:
        db.session.rollback()
        flash(f"Not reverted: {exc}. Look at the newest entry, then revert again.", "warning")
    except LastAdminError:
        db.session.rollback()
        flash(LAST_ADMIN, "error")
    except UserError as exc:  # DuplicateError: the old name or email is taken now
        db.session.rollback()
        reasons = " ".join(m for messages in exc.errors.values() for m in messages)
        flash(f"Not reverted: {reasons}", "error")
    except (NoSuchChangeError, UserGoneError) as exc:
        db.session.rollback()
        flash(f"Not reverted: {exc}.", "error")
    else:
        flash(f"User {user.username} reverted to change #{cursor} (now version "
              f"{user.version}).", "success")
    return back
