"""The users pages: the live list (dashboard) and the admin create, edit and delete forms."""

from flask import Blueprint

from app.inputs import refuse_nul

bp = Blueprint("users", __name__)
# For every request of the app, not only this blueprint's (API included).
bp.before_app_request(refuse_nul)

from app.users import routes  # noqa: E402,F401  (registers the views on bp)
