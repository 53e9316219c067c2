"""The dashboard's bulk actions: the bulk API's rules, with the login session (and the
CSRF token in the X-CSRFToken header) instead of a bearer token."""

from __future__ import annotations

from flask import jsonify, request
from flask_login import current_user

from app.extensions import db
from app.live.capture import set_change_context
from app.security import admin_required
from app.users import bp
from app.users.bulk import MissingUsersError, bulk_action, check_request
from app.users.routes import LAST_ADMIN_MESSAGE
from app.users.service import LastAdminError, UserError


@bp.post("/users/bulk")
@admin_required
def bulk_page():
    """``{"ids", "action", "role"?}`` as JSON; answers as ``POST /api/users/bulk``."""
    data = request.get_json(silent=True)
    try:
        ids, action, role = check_request(data if isinstance(data, dict) else {})
        set_change_context(current_user.username, "ui")
        return {"count": bulk_action(ids, action, role)}
    except UserError as exc:
        return jsonify(error="invalid input", errors=exc.errors), 400
    except MissingUsersError as exc:
        return jsonify(error=str(exc), missing=exc.missing), 404
    except LastAdminError:
        db.session.rollback()
        return jsonify(error=LAST_ADMIN_MESSAGE), 409
