"""The users pages: the live list (dashboard) and the admin create/edit/delete forms."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import Select, func, select
from werkzeug.wrappers import Response

from app.extensions import db
from app.inputs import bounded_int
from app.live.capture import set_change_context
from app.live.feed import current_cursor
from app.models import ROLES, User
from app.security import admin_required
from app.users import bp
from app.users.forms import ConfirmForm, CreateUserForm, EditUserForm
from app.users.service import (
    LastAdminError,
    StaleVersionError,
    UserError,
    create_user,
    delete_user,
    update_user,
)

SORTABLE = {
    "username": User.username,
    "email": User.email,
    "role": User.role,
    "active": User.active,
    "created_at": User.created_at,
    "updated_at": User.updated_at,
    "id": User.id,
}
DEFAULT_SORT = "username"
ACTIVE_FILTER = {"yes": True, "no": False}
LAST_ADMIN_MESSAGE = (
    "This is the last active admin: it cannot be demoted, deactivated or deleted. "
    "Make another user an active admin first. Nothing was changed."
)


def list_args() -> dict[str, Any]:
    """The list's query arguments, cleaned: unknown values fall back to the defaults."""
    sort = request.args.get("sort", DEFAULT_SORT)
    if sort.lstrip("-") not in SORTABLE or sort.count("-") > 1:
        sort = DEFAULT_SORT
    role = request.args.get("role", "")
    active = request.args.get("active", "")
    per_page = request.args.get("per_page", current_app.config["USERS_PER_PAGE"], type=int)
    return {
        "q": request.args.get("q", "").strip()[:100],
        "role": role if role in ROLES else "",
        "active": active if active in ACTIVE_FILTER else "",
        "sort": sort,
        "page": bounded_int(request.args.get("page")) or 1,
        "per_page": min(max(per_page, 1), 100),
    }


def users_query(args: dict[str, Any]) -> Select:
    """The users matching the search and filters, in the requested order."""
    query = select(User)
    if args["q"]:
        needle = args["q"].lower()
        query = query.where(
            func.lower(User.username).contains(needle, autoescape=True)
            | func.lower(User.email).contains(needle, autoescape=True)
        )
    if args["role"]:
        query = query.where(User.role == args["role"])
    if args["active"]:
        query = query.where(User.active.is_(ACTIVE_FILTER[args["active"]]))
    column = SORTABLE[args["sort"].lstrip("-")]
    if column is User.username:  # case-insensitive, like the live table's client-side sort
        column = func.lower(User.username)
    if args["sort"].startswith("-"):
        return query.order_by(column.desc(), User.id.desc())
    # Ties by id, in the same direction: the order the dashboard's script keeps.
    return query.order_by(column.asc(), User.id.asc())


def table_counts() -> dict[str, int]:
    """Counts over the whole table (not the filtered page): total, active, active admins.

    The same counts as the dashboard's script and /live/stats keep up to date.
    """
    total, active, admins = db.session.execute(
        select(
            func.count(),
            func.count().filter(User.active.is_(True)),
            func.count().filter(User.active.is_(True), User.role == "admin"),
        ).select_from(User)
    ).one()
    return {"total": total, "active": active, "admins": admins}


@bp.route("/")
@login_required
def index() -> str:
    """The users list, also the live dashboard (the cursor is read before the rows)."""
    cursor = current_cursor()
    args = list_args()
    pagination = db.paginate(
        users_query(args), page=args["page"], per_page=args["per_page"], error_out=False
    )

    def list_url(**changes: Any) -> str:
        merged = {**args, **changes}
        return url_for("users.index", **{k: v for k, v in merged.items() if v not in ("", None)})

    return render_template(
        "users/index.html",
        cursor=cursor,
        args=args,
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
    try:
        update_user(user, form.service_data(), int(form.version.data))
    except StaleVersionError as exc:
        db.session.rollback()
        current = exc.current
        # The admin now knowingly holds the current version: saving again overwrites.
        form.version.data = str(current.version)
        return render_template("users/form.html", form=form, user=current, conflict=True), 409
    except LastAdminError:
        db.session.rollback()
        form.form_errors.append(LAST_ADMIN_MESSAGE)
        return render_template("users/form.html", form=form, user=user), 409
    except UserError as exc:
        db.session.rollback()
        form.add_service_errors(exc.errors)
        return render_template("users/form.html", form=form, user=user), exc.status
    flash(f"User {user.username} saved.", "success")
    return redirect(url_for("users.index"))


@bp.route("/users/<int(max=2147483647):id>/delete", methods=["GET", "POST"])
@admin_required
def delete(id: int) -> str | Response | tuple[str, int]:
    """Ask for confirmation (GET), then delete the user (POST)."""
    user = db.get_or_404(User, id)
    form = ConfirmForm()
    if form.validate_on_submit():
        username = user.username
        set_change_context(current_user.username, "ui")
        try:
            delete_user(user)
        except LastAdminError:
            db.session.rollback()
            form.form_errors.append(LAST_ADMIN_MESSAGE)
            return render_template("users/delete.html", form=form, user=user), 409
        flash(f"User {username} deleted.", "success")
        return redirect(url_for("users.index"))
    return render_template("users/delete.html", form=form, user=user)
