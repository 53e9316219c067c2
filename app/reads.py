"""Reads that may take long, kept off the gevent hub.

SQLite works in the calling thread: under gevent, a read that takes a second (a search
matching a tenth of a million users, a sort no index serves) stops every client of the
process for that second. sqlite3 lets go of the GIL while it steps, so the same read in
one of gevent's native threads leaves the hub serving everyone else; only the calling
greenlet waits. PostgreSQL's driver (psycopg 3) already waits cooperatively, and without
gevent's patching (tests, ``flask run``) there is no hub to keep free.
"""

from __future__ import annotations

from gevent import get_hub, monkey
from sqlalchemy import Connection, Executable, RowMapping

from app.extensions import db


def read_all(statement: Executable) -> list[RowMapping]:
    """The rows of ``statement``, on the session's connection and transaction."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite" or not monkey.is_module_patched("threading"):
        return _read(connection, statement)
    return get_hub().threadpool.apply(_read, (connection, statement))


def _read(connection: Connection, statement: Executable) -> list[RowMapping]:
    return list(connection.execute(statement).mappings())
