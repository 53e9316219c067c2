"""Limits every request's input must respect before it reaches the database.

They come from what the database drivers accept: sqlite3 cannot bind integers past
64 bits (OverflowError), OFFSET arithmetic overflows well before that, and psycopg
refuses text parameters containing NUL. Left unchecked, each would be a 500.
"""

from __future__ import annotations

from flask import abort, request

# The largest id or page number taken from a URL: the range of an SQL INTEGER. Larger ids
# are a 404 (the pages' converter is ``<int(max=2147483647):id>``).
MAX_INT = 2**31 - 1
# The largest change-log cursor (an SQL BIGINT).
MAX_CURSOR = 2**63 - 1
NUL_MESSAGE = "The request contains a NUL character (\\x00), which no field accepts."


def bounded_int(raw: str | None, high: int = MAX_INT) -> int | None:
    """``raw`` as an integer from 1 to ``high``; None when missing, not a number or out of
    range."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:  # a 5000-digit number too: past Python's limit on int()
        return None
    return value if 1 <= value <= high else None


def _texts() -> list[str]:
    """Every text of the request that may reach a query: query string, form, credentials."""
    texts = [text for pair in request.args.items(multi=True) for text in pair]
    texts += [text for pair in request.form.items(multi=True) for text in pair]
    texts.append(request.headers.get("Authorization", ""))
    if (auth := request.authorization) is not None:  # Basic credentials arrive base64-encoded
        texts += [auth.token or "", *auth.parameters.values()]
    return texts


def refuse_nul() -> None:
    """Answer 400 (JSON under /api, else the error page) to a request carrying a NUL."""
    if any("\x00" in text for text in _texts()):
        abort(400, description=NUL_MESSAGE)
