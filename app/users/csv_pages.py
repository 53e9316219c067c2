"""The CSV pages: the export of the dashboard's current view, and the import form."""

from __future__ import annotations

from flask import (
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required

from app.live.capture import set_change_context
from app.security import admin_required
from app.users import bp
from app.users.csvimport import import_csv
from app.users.csvio import export_csv
from app.users.forms import ImportForm
from app.users.routes import page_listing


@bp.route("/users/export.csv")
@login_required
def export_page() -> Response:
    """Every user of the dashboard's view (all pages), as CSV, streamed."""
    chunks = export_csv(page_listing(), for_spreadsheets=True)
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="users.csv"'
    return response


@bp.route("/users/import", methods=["GET", "POST"])
@admin_required
def import_page() -> str | Response | tuple[str, int]:
    """Upload a CSV: every line is checked first; the errors are listed, nothing written."""
    form = ImportForm()
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return render_template("users/import.html", form=form, errors=[]), status
    try:
        content = form.file.data.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        form.file.errors.append("The file is not UTF-8 text.")
        return render_template("users/import.html", form=form, errors=[]), 400
    set_change_context(current_user.username, "ui")
    result = import_csv(content)
    if result.errors:
        current_app.logger.info("CSV import refused: %d bad lines", len(result.errors))
        return render_template("users/import.html", form=form, errors=result.errors), 400
    flash(f"Imported: {result.created} created, {result.updated} updated.", "success")
    return redirect(url_for("users.index"))
