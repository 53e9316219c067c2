"""CSV export of a users list: every matching user in the list's order, read in keyset
batches (never an offset, never the whole list in memory)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, literal, or_, select, tuple_, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from app.extensions import db
from app.models import USER_FIELDS, User, user_payload
from app.reads import read_all
from app.users.listing import Listing

CSV_FIELDS = USER_FIELDS
EXPORT_BATCH = 2000
# In a file for spreadsheets, a cell one would run as a formula (OWASP's "CSV injection"
# list; an email such as =cmd|'/Ccalc'!A0@example.com is valid) goes out after an
# apostrophe, the spreadsheets' mark for "text"; so does one that starts with an
# apostrophe itself, so that the import can tell the mark from the value.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def _after(keys: list[tuple[ColumnElement[Any], bool]], last: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``last`` (the previous batch's last sort values) in the order.

    The values go back as the driver gave them (NullType: no conversion), so a timestamp
    compares equal to itself whatever text it is stored as.
    """
    values = [literal(value, NullType()) for value in last]
    if len({descending for _, descending in keys}) == 1:
        left, right = tuple_(*(e for e, _ in keys)), tuple_(*values)
        return left < right if keys[0][1] else left > right
    clauses = []
    for i, (expression, descending) in enumerate(keys):
        equal = [keys[j][0] == values[j] for j in range(i)]
        step = expression < values[i] if descending else expression > values[i]
        clauses.append(and_(*equal, step))
    return or_(*clauses)


def export_rows(listing: Listing, batch: int = EXPORT_BATCH) -> Iterator[dict[str, Any]]:
    """Every user of ``listing`` (all pages), as the public dicts, in its order.

    Each batch is its own short read: the connection goes back to the pool between
    batches, while the client takes the previous one in.
    """
    keys = listing.sort_columns()
    labels = [f"_k{i}" for i in range(len(keys))]
    columns = [getattr(User, name) for name in CSV_FIELDS]
    # Selected without the column types' conversion, to be bound back as they came.
    raw_keys = [type_coerce(expression, NullType()).label(label)
                for (expression, _), label in zip(keys, labels, strict=True)]
    last: list[Any] | None = None
    while True:
        query = (select(*columns, *raw_keys).where(*listing.conditions())
                 .order_by(*listing.order_by()).limit(batch))
        if last is not None:
            query = query.where(_after(keys, last))
        rows = read_all(query)
        db.session.rollback()
        for row in rows:
            yield user_payload(row)
        if len(rows) < batch:
            return
        last = [rows[-1][label] for label in labels]


def csv_value(value: Any) -> str:
    """A value as the JSON spells it: ``true``/``false``, ISO 8601 timestamps."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def spreadsheet_text(text: str) -> str:
    """``text`` behind an apostrophe where a spreadsheet would take it for a formula."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


def csv_text(cell: str) -> str:
    """A username or email cell back to its value: without the apostrophe that
    ``spreadsheet_text`` put before it (an apostrophe before other text is the value's)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def export_csv(listing: Listing, *, for_spreadsheets: bool) -> Iterator[str]:
    """The CSV text of ``listing``: the header line, then one chunk per batch of rows.

    ``for_spreadsheets`` (the dashboard's download, the CLI): usernames and emails as
    ``spreadsheet_text``; else (the API) every value exactly as in the JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    guarded = ("username", "email") if for_spreadsheets else ()
    for count, row in enumerate(export_rows(listing), 1):
        writer.writerow([spreadsheet_text(csv_value(row[field])) if field in guarded
                         else csv_value(row[field]) for field in CSV_FIELDS])
        if count % EXPORT_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
