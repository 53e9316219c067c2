"""The users pages: the live list (dashboard) and the admin create, edit and delete forms."""

from flask import Blueprint

bp = Blueprint("users", __name__)

from app.users import bulk_pages, csv_pages, detail_page, history_pages, routes  # noqa: E402,F401  (registers the views on bp)
