"""Limits every request's input must respect before it reaches the database.

They come from what the database drivers accept: sqlite3 cannot bind integers past
64 bits (OverflowError) and OFFSET arithmetic overflows well before that. Left
unchecked, each would be a 500.
"""

from __future__ import annotations

# The largest id or page number taken from a URL: the range of an SQL INTEGER. Larger ids
# are a 404 (the pages' converter is ``<int(max=2147483647):id>``).
MAX_INT = 2**31 - 1


def bounded_int(raw: str | None) -> int | None:
    """``raw`` as an integer from 1 to MAX_INT; None when missing, not a number or out of range."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= MAX_INT else None
