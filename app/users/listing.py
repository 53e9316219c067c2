"""The users list, declared once: what can be searched, filtered and sorted, and how.

The dashboard page (lenient: a bad parameter falls back to its default), ``GET
/api/users`` (strict: a bad parameter is a 400) and the live views (strict, typed JSON)
all build a ``Listing`` here, so they return the same users in the same order. The same
rules also exist in Python (``matches``, ``compare``) so the live views can tell which
pages a change can affect without asking the database.

Rules:
- ``q`` is a substring of the username or the email, ignoring ASCII case.
- ``role`` is ``admin`` or ``user``; ``active`` is a boolean.
- ``sort`` is one field or several separated by commas, ``-`` for descending; usernames
  and emails sort ignoring ASCII case, byte order otherwise (the same on SQLite and
  PostgreSQL, whatever the database's collation). The id breaks ties, in the direction
  of the last key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.sql.elements import ColumnElement

from app.collation import ascii_lower, ascii_order, fold
from app.extensions import db
from app.inputs import MAX_INT, bounded_int
from app.models import ROLES, USER_FIELDS, User, parse_timestamp, user_payload
from app.reads import read_all
from app.users.counts import count_where

SORTABLE = ("id", "username", "email", "role", "active", "version", "created_at", "updated_at")
CASE_INSENSITIVE = ("username", "email")
SEARCH_COLUMNS = ("username", "email")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
Q_MAX_LENGTH = 100
PER_PAGE_CHOICES = (10, 20, 50, 100)
VIEW_KEYS = ("q", "role", "active", "sort", "page", "per_page")
# Pages from this offset on are read from the end when that is nearer.
BACKWARD_FROM = 1000
# The trigram index (FTS5 on SQLite, pg_trgm on PostgreSQL) needs three characters.
TRIGRAM = 3


class ListingError(ValueError):
    """Bad list parameters: ``errors`` maps each parameter to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def _sort_keys(sort: str) -> list[tuple[str, bool]] | None:
    """``[(field, descending)]`` with the id tie appended; None when the sort is bad."""
    keys: list[tuple[str, bool]] = []
    for part in (p.strip() for p in sort.split(",")):
        field = part.removeprefix("-")
        if field not in SORTABLE or field in (k for k, _ in keys):
            return None
        keys.append((field, part.startswith("-")))
    if not keys:
        return None
    if "id" not in (field for field, _ in keys):
        keys.append(("id", keys[-1][1]))
    return keys


def _checked(values: Mapping[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The typed ``values`` that follow the listing's rules; each other one is reported
    in ``errors`` (the rules of the query string and of a live view alike)."""
    clean: dict[str, Any] = {}
    if "q" in values:
        if type(values["q"]) is not str or len(values["q"].strip()) > Q_MAX_LENGTH:
            errors["q"] = [f"Must be a string of at most {Q_MAX_LENGTH} characters."]
        else:
            clean["q"] = values["q"].strip()
    if "role" in values:
        if values["role"] not in ROLES:
            errors["role"] = [f"Must be one of: {', '.join(ROLES)}."]
        else:
            clean["role"] = values["role"]
    if "active" in values:
        if type(values["active"]) is not bool:
            errors["active"] = ["Must be true or false."]
        else:
            clean["active"] = values["active"]
    if "sort" in values:
        if type(values["sort"]) is not str or _sort_keys(values["sort"]) is None:
            errors["sort"] = [f"Sort by one of: {', '.join(SORTABLE)} "
                              "(prefix '-' to reverse, commas between fields)."]
        else:
            clean["sort"] = values["sort"].replace(" ", "")
    for name in ("page", "per_page"):
        if name in values:
            number = values[name]
            if type(number) is not int or not 1 <= number <= MAX_INT:
                errors[name] = [f"Must be an integer from 1 to {MAX_INT}."]
            else:
                clean[name] = number
    return clean


@dataclass(frozen=True)
class Listing:
    """One query of the users list: filter, sort and page."""

    q: str = ""
    role: str | None = None
    active: bool | None = None
    sort: str = "id"
    page: int = 1
    per_page: int = 20

    # --- building one -------------------------------------------------------------------

    @classmethod
    def from_args(cls, args: Mapping[str, str], *, strict: bool, default_sort: str = "id",
                  default_per_page: int = 20, max_per_page: int = 100) -> Listing:
        """From a query string. Strict: every bad parameter is reported at once
        (``ListingError``); lenient: a bad parameter takes its default (a long ``q`` is
        cut)."""
        typed: dict[str, Any] = {"q": args.get("q", "")}
        if role := args.get("role", ""):
            typed["role"] = role
        if active := args.get("active", ""):
            typed["active"] = BOOLEANS.get(active.lower(), active)
        if "sort" in args:
            typed["sort"] = args["sort"]
        for name in ("page", "per_page"):
            if name in args:
                number = bounded_int(args[name])
                typed[name] = args[name] if number is None else number
        errors: dict[str, list[str]] = {}
        values = {"sort": default_sort, "per_page": default_per_page, **_checked(typed, errors)}
        if errors and strict:
            raise ListingError(errors)
        if "q" in errors:
            values["q"] = typed["q"].strip()[:Q_MAX_LENGTH]
        values["per_page"] = min(values["per_page"], max_per_page)
        return cls(**values)

    @classmethod
    def from_view(cls, view: Any, *, max_per_page: int = 100) -> Listing:
        """From a live view's JSON object (see the contract); ``ListingError`` when bad."""
        if not isinstance(view, dict):
            raise ListingError({"view": ["Must be an object."]})
        errors: dict[str, list[str]] = {}
        if unknown := sorted(set(view) - set(VIEW_KEYS)):
            errors["view"] = [f"Unknown keys: {', '.join(map(str, unknown))}."]
        values = _checked(view, errors)
        if errors:
            raise ListingError(errors)
        values["per_page"] = min(values.get("per_page", cls.per_page), max_per_page)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Every key, as used (the view in an acknowledgement)."""
        return asdict(self)

    # --- its parts -----------------------------------------------------------------------

    @cached_property
    def keys(self) -> list[tuple[str, bool]]:
        """The sort as ``[(field, descending)]``, the id tie included."""
        return _sort_keys(self.sort) or [("id", False)]

    @cached_property
    def filter_key(self) -> tuple[str, str | None, bool | None]:
        """What selects the rows; views with the same one have the same ``total``."""
        return (fold(self.q), self.role, self.active)

    @cached_property
    def order_key(self) -> tuple[Any, ...]:
        """What orders the rows; views with the same one are pages of one list."""
        return (*self.filter_key, tuple(self.keys))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    # --- in SQL --------------------------------------------------------------------------

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.q:
            needle = fold(self.q)
            conditions.append(or_(*(
                ascii_lower(getattr(User, name)).contains(needle, autoescape=True)
                for name in SEARCH_COLUMNS
            )))
            if len(needle) >= TRIGRAM and db.engine.dialect.name == "sqlite":
                # Narrow by the FTS5 trigram index first; the LIKE above stays the rule.
                phrase = '"' + needle.replace('"', '""') + '"'
                conditions.append(User.id.in_(
                    text("SELECT rowid FROM users_fts WHERE users_fts MATCH :phrase")
                    .bindparams(phrase=phrase)
                ))
        if self.role is not None:
            conditions.append(User.role == self.role)
        if self.active is not None:
            conditions.append(User.active.is_(self.active))
        return conditions

    def sort_columns(self) -> list[tuple[ColumnElement[Any], bool]]:
        """The sort's SQL expressions, each with whether it descends."""
        return [(ascii_order(getattr(User, field)) if field in CASE_INSENSITIVE
                 else getattr(User, field), descending) for field, descending in self.keys]

    def order_by(self, *, backward: bool = False) -> list[ColumnElement[Any]]:
        """The sort in SQL; ``backward`` reverses every key (the list read from its end)."""
        return [column.desc() if descending is not backward else column.asc()
                for column, descending in self.sort_columns()]

    def page_ids(self, offset: int | None = None, limit: int | None = None,
                 total: int | None = None) -> Select | None:
        """The ids of this page's users, or of ``offset``/``limit``, in order: read from
        the sort's index alone (SQLite's index holds the id; PostgreSQL's index-only scan
        needs the table vacuumed). None when ``total`` says there are none.

        An offset costs its length in index entries, so with ``total`` (the count of the
        whole list, as of the same snapshot) a deep page in the list's second half is
        read from the end: no page costs more than half the list. Not a shallow one: a
        LIMIT smaller than the page can make PostgreSQL's planner prefer walking the
        sort's index to find a search's few matches over its trigram index.
        """
        offset = self.offset if offset is None else offset
        limit = self.per_page if limit is None else limit
        if total is not None and offset >= total:
            return None
        backward = False
        if total is not None and offset >= BACKWARD_FROM and 2 * offset + limit > total:
            offset, limit = max(0, total - offset - limit), min(limit, total - offset)
            backward = True
        return (select(User.id).where(*self.conditions())
                .order_by(*self.order_by(backward=backward)).offset(offset).limit(limit))

    def page_select(self, offset: int | None, limit: int | None, total: int | None,
                    *entities: Any) -> Select | None:
        """``entities`` of the users of ``page_ids``, in order (only their rows are read)."""
        ids = self.page_ids(offset, limit, total)
        if ids is None:
            return None
        return (select(*entities).where(User.id.in_(ids.scalar_subquery()))
                .order_by(*self.order_by()))

    def rows(self, offset: int | None = None, limit: int | None = None,
             total: int | None = None) -> list[User]:
        """The users of this page, or of ``offset``/``limit`` in the same order: their
        ids first (off the hub, see app/reads.py: a short search may walk a whole
        index), then those users by primary key."""
        query = self.page_select(offset, limit, total, User.id)
        if query is None:
            return []
        ids = [row["id"] for row in read_all(query)]
        users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(ids)))}
        return [users[i] for i in ids if i in users]

    def payloads(self, offset: int | None = None, limit: int | None = None,
                 total: int | None = None, known: Mapping[int, dict] | None = None
                 ) -> list[dict]:
        """Like ``rows``, as the public dicts, read without building ORM objects.

        With ``known`` (payloads by id, e.g. a live page's rows), the page is read as ids
        and versions, and only the users whose version is not known are read whole: a
        version bump comes with every change of a row, so an equal version is an equal
        row."""
        columns = [getattr(User, name) for name in USER_FIELDS]
        if not known:
            query = self.page_select(offset, limit, total, *columns)
            return [] if query is None else [user_payload(row) for row in read_all(query)]
        query = self.page_select(offset, limit, total, User.id, User.version)
        if query is None:
            return []
        order = [(row["id"], row["version"]) for row in read_all(query)]
        wanted = [i for i, version in order if known.get(i, {}).get("version") != version]
        fresh = {}
        for start in range(0, len(wanted), 500):
            rows = read_all(select(*columns).where(User.id.in_(wanted[start:start + 500])))
            fresh.update((row["id"], user_payload(row)) for row in rows)
        return [fresh[i] if i in fresh else known[i] for i, _ in order
                if i in fresh or i in known]

    def sort_values(self, row: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
        """``sort_value`` of a row the filter selects, else None."""
        return self.sort_value(row) if self.matches(row) else None

    def compare_values(self, x: tuple[Any, ...], y: tuple[Any, ...]) -> int:
        """``compare`` of two ``sort_value`` results."""
        for (_, descending), a, b in zip(self.keys, x, y, strict=True):
            if a != b:
                order = -1 if a < b else 1
                return -order if descending else order
        return 0

    def count(self) -> int:
        """How many users match (every page): from the maintained counts without a
        search, else by the search index."""
        if not self.q:
            return count_where(self.role, self.active)
        query = select(func.count().label("n")).select_from(User).where(*self.conditions())
        return read_all(query)[0]["n"]

    # --- in Python (the live views) -------------------------------------------------------

    def matches(self, row: Mapping[str, Any] | None) -> bool:
        """Whether a user (a payload dict) is selected by the filter, as the SQL says."""
        if row is None:
            return False
        if self.role is not None and row["role"] != self.role:
            return False
        if self.active is not None and bool(row["active"]) is not self.active:
            return False
        if self.q:
            needle = fold(self.q)
            return any(needle in fold(row[name] or "") for name in SEARCH_COLUMNS)
        return True

    def sort_value(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row's sort key, field by field (direction applied by ``compare``)."""
        values = []
        for field, _ in self.keys:
            value = row[field]
            if field in CASE_INSENSITIVE:
                value = fold(value or "").encode()  # byte order, as "C" and SQLite sort
            elif field in ("created_at", "updated_at"):
                value = parse_timestamp(value)
            elif field == "active":
                value = bool(value)
            values.append(value)
        return tuple(values)

    def compare(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        """-1, 0 or 1: where ``a`` comes relative to ``b`` in this list."""
        return self.compare_values(self.sort_value(a), self.sort_value(b))


class ListingPagination(Pagination):
    """Flask-SQLAlchemy's pagination (page links and all) of a ``Listing``: its rows and
    its maintained count."""

    def __init__(self, listing: Listing) -> None:
        super().__init__(page=listing.page, per_page=listing.per_page, max_per_page=None,
                         error_out=False, listing=listing)

    def _query_items(self) -> list[User]:
        listing: Listing = self._query_args["listing"]
        self._total = listing.count()
        return listing.rows(total=self._total)

    def _query_count(self) -> int:
        return self._total
