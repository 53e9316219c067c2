"""The demo credentials ``flask seed`` saved, shown again only while they still work."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import User

ADMIN_LINE = re.compile(r"^Admin login: (\S+) / (\S+)$", re.MULTILINE)


def saved_credentials(path: Path) -> str:
    """The saved text, with the admin's password replaced by a note once it was changed
    (or the admin is gone); a short sentence when nothing was saved."""
    if not path.exists():
        return "The database already has users: nothing seeded."
    text = path.read_text().rstrip()
    match = ADMIN_LINE.search(text)
    if match:
        name, password = match.groups()
        user = db.session.scalar(select(User).filter_by(username=name))
        if user is None or not user.check_password(password):
            text = text.replace(match.group(0), f"Admin login: {name} (its password was changed "
                                                "since the seed; the saved one no longer works)")
    return text
