"""The users pages: the live list (dashboard) and the admin create/edit/delete forms."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup
from werkzeug.wrappers import Response

from app.auth.sessions import remembered, start_session
from app.extensions import db
from app.live.capture import set_change_context
from app.live.changelog import current_cursor
from app.models import User
from app.security import admin_required
from app.users import bp
from app.users.counts import table_counts
from app.users.forms import ConfirmForm, CreateUserForm, EditUserForm
from app.users.listing import PER_PAGE_CHOICES, Listing, ListingPagination
from app.users.service import (
    LastAdminError,
    StaleVersionError,
    UserError,
    create_user,
    delete_user,
    update_user,
)

DEFAULT_SORT = "username"
LAST_ADMIN_MESSAGE = (
    "This is the last active admin: it cannot be demoted, deactivated or deleted. "
    "Make another user an active admin first. Nothing was changed."
)
STALE_DELETE_MESSAGE = (
    "Someone else changed this user since you opened this page: nothing was deleted. "
    "Check the user as it is now and confirm again."
)


def page_listing() -> Listing:
    """The list's query arguments, leniently: a bad value falls back to its default."""
    return Listing.from_args(request.args, strict=False, default_sort=DEFAULT_SORT,
                             default_per_page=current_app.config["USERS_PER_PAGE"],
                             max_per_page=max(PER_PAGE_CHOICES))


def template_args(listing: Listing) -> dict[str, Any]:
    """The listing as the page's links and form fields spell it ('' for "any")."""
    active = "" if listing.active is None else str(listing.active).lower()
    return {**listing.as_dict(), "role": listing.role or "", "active": active}


@bp.route("/")
@login_required
def index() -> str:
    """The users list, also the live dashboard (the cursor is read before the rows)."""
    cursor = current_cursor()
    listing = page_listing()
    args = template_args(listing)
    pagination = ListingPagination(listing)

    def list_url(**changes: Any) -> str:
        merged = {**args, **changes}
        return url_for("users.index", **{k: v for k, v in merged.items() if v not in ("", None)})

    return render_template(
        "users/index.html",
        cursor=cursor,
        args=args,
        view=listing.as_dict(),
        pagination=pagination,
        counts=table_counts(),
        list_url=list_url,
    )


@bp.route("/users/new", methods=["GET", "POST"])
@admin_required
def create() -> str | Response | tuple[str, int]:
    """Create a user (admins only)."""
    form = CreateUserForm()
    if form.validate_on_submit():
        set_change_context(current_user.username, "ui")
        try:
            user = create_user(form.service_data())
        except UserError as exc:
            db.session.rollback()
            form.add_service_errors(exc.errors)
            return render_template("users/form.html", form=form, user=None), exc.status
        flash(f"User {user.username} created.", "success")
        return redirect(url_for("users.index"))
    status = 400 if form.is_submitted() else 200
    return render_template("users/form.html", form=form, user=None), status


@bp.route("/users/<int(max=2147483647):id>/edit", methods=["GET", "POST"])
@admin_required
def edit(id: int) -> str | Response | tuple[str, int]:
    """Edit a user; the hidden ``version`` guards against overwriting someone else's change."""
    user = db.get_or_404(User, id)
    form = EditUserForm(obj=user)
    if not form.is_submitted():
        form.version.data = str(user.version)
        return render_template("users/form.html", form=form, user=user)
    if not form.validate():
        return render_template("users/form.html", form=form, user=user), 400
    set_change_context(current_user.username, "ui")
    epoch = user.session_epoch
    try:
        update_user(user, form.service_data(), int(form.version.data))
    except StaleVersionError as exc:
        db.session.rollback()
        current = exc.current
        loaded = form.version.data
        # The admin now knowingly holds the current version: saving again overwrites.
        form.version.data = str(current.version)
        return render_template("users/form.html", form=form, user=current, conflict=True,
                               loaded_version=loaded), 409
    except LastAdminError:
        db.session.rollback()
        form.form_errors.append(LAST_ADMIN_MESSAGE)
        return render_template("users/form.html", form=form, user=user), 409
    except UserError as exc:
        db.session.rollback()
        form.add_service_errors(exc.errors)
        return render_template("users/form.html", form=form, user=user), exc.status
    if user.id == current_user.id and user.session_epoch != epoch:
        # A new password ended this session too: carry on in a new one (start_session
        # refuses after one's own deactivation).
        start_session(user, remember=remembered())
    flash(f"User {user.username} saved.", "success")
    return redirect(url_for("users.index"))


@bp.route("/users/<int(max=2147483647):id>/delete", methods=["GET", "POST"])
@admin_required
def delete(id: int) -> str | Response | tuple[str, int]:
    """Ask for confirmation (GET), then delete the user (POST) if it is still the version
    the page showed. A refusal shows its reason on the page, with its status."""
    user = db.get_or_404(User, id)
    form = ConfirmForm()
    if not form.is_submitted():
        form.version.data = str(user.version)
    elif form.validate():
        username = user.username
        set_change_context(current_user.username, "ui")
        version = int(form.version.data) if form.version.data else None
        try:
            delete_user(user, version)
        except StaleVersionError as exc:
            db.session.rollback()
            user = exc.current
            form.version.data = str(user.version)  # confirming again deletes this one
            form.form_errors.append(STALE_DELETE_MESSAGE)
            return render_template("users/delete.html", form=form, user=user), exc.status
        except LastAdminError as exc:
            db.session.rollback()
            form.form_errors.append(LAST_ADMIN_MESSAGE)
            return render_template("users/delete.html", form=form, user=user), exc.status
        flash(Markup('User {} deleted. <a href="{}">History and undo</a>').format(
            username, url_for("users.history", id=id)), "success")
        return redirect(url_for("users.index"))
    status = 400 if form.is_submitted() else 200
    return render_template("users/delete.html", form=form, user=user), status
