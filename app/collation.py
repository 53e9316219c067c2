"""Case rules shared by SQL and Python: ASCII letters fold, nothing else does.

SQLite's ``lower()`` and ``LIKE`` fold ASCII letters only; PostgreSQL's ``lower()`` does
the same under the "C" collation, whatever the database's own collation. Sorting and
searching usernames and emails with ``ascii_lower`` (and comparing in Python with
``fold``) therefore gives one order and one set of matches on both databases.
``ascii_order`` is the same order, as SQLite can read it from an index alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import String

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class ascii_lower(GenericFunction):  # noqa: N801 - an SQL function name
    """``lower()`` of ASCII letters only, on both databases (their indexes use it too)."""

    type = String()
    inherit_cache = True


@compiles(ascii_lower)
def _ascii_lower_sqlite(element: ascii_lower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"  # SQLite's lower is ASCII


@compiles(ascii_lower, "postgresql")
def _ascii_lower_pg(element: ascii_lower, compiler: Any, **kw: Any) -> str:
    return f'lower(({compiler.process(element.clauses, **kw)}) COLLATE "C")'


class ascii_order(GenericFunction):  # noqa: N801 - an SQL function name
    """The order of ``ascii_lower``, for sorting and the sort indexes. SQLite: the NOCASE
    collation, which folds ASCII letters only too; unlike ``lower()`` its index holds
    the column, so a deep page is read from the index alone (SQLite 3.40 reads no
    expression from an index)."""

    type = String()
    inherit_cache = True


@compiles(ascii_order)
def _ascii_order_sqlite(element: ascii_order, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.clauses, **kw)} COLLATE NOCASE"


@compiles(ascii_order, "postgresql")
def _ascii_order_pg(element: ascii_order, compiler: Any, **kw: Any) -> str:
    return _ascii_lower_pg(element, compiler, **kw)


def fold(value: str) -> str:
    """Python's twin of ``ascii_lower``."""
    return value.translate(_ASCII_LOWER)
