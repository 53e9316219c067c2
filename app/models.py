"""The database models: users, login sessions, API tokens, the users change log and chat
messages."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator
from werkzeug.security import check_password_hash, generate_password_hash

from app.collation import ascii_lower, ascii_order
from app.extensions import db

ROLES = ("admin", "user")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def parse_timestamp(value: Any) -> datetime | None:
    """A UTC datetime from a datetime or the text SQLite and PostgreSQL give."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return parse_timestamp(value)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return parse_timestamp(value)


# SQLite gives INTEGER PRIMARY KEY its autoincrement only for plain INTEGER.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def secret_digest(secret: str) -> str:
    """What is stored of a bearer secret (an API token, a login session's key): its
    SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """How every password is stored (``User.password_hash``)."""
    return generate_password_hash(password)


class User(UserMixin, db.Model):
    """An account: the rows of the live users table."""

    __tablename__ = "users"
    # AUTOINCREMENT: SQLite never hands out a deleted user's id again (migration 0005).
    __table_args__ = (CheckConstraint("role IN ('admin', 'user')", name="ck_users_role"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # Nullable so that rows inserted with plain SQL are valid (they cannot log in).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10), default="user", server_default="user")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # Moving it on ends every login session made before (``LoginSession.epoch``).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    __mapper_args__ = {"version_id_col": version}

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    # The key of the login session this object was loaded for or logged in with
    # (``app.auth.sessions``); not a column.
    login_key = None

    def get_id(self) -> str:
        """Flask-Login's id, kept in the session and remember-me cookies: the user id and
        the login session's key."""
        return f"{self.id}:{self.login_key}"

    @property
    def is_active(self) -> bool:  # Flask-Login: inactive users cannot log in
        return bool(self.active)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and bool(self.active)

    def to_dict(self) -> dict[str, Any]:
        """The user as every API and Socket.IO payload shows it (never the hash)."""
        return user_payload(
            {c: getattr(self, c) for c in USER_FIELDS}
        )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"


# The users list's indexes (migration 0003): one per sort, each with the id tie (a
# backward scan serves the descending sort), on the expressions app/users/listing.py
# sorts and searches by. Usernames and emails sort by ascii_order (0007), match by
# ascii_lower.
for _field in ("role", "active", "version", "created_at", "updated_at"):
    Index(f"ix_users_{_field}_id", User.__table__.c[_field], User.id)
# A username is taken in any case (0012): concurrent creates of "Ann" and "ann" cannot
# both commit. Emails are stored lower-case, so their plain unique constraint does it.
Index("uq_users_username_folded", ascii_order(User.__table__.c.username), unique=True)
for _field in ("username", "email"):
    # The column itself too, on PostgreSQL: deep pages then walk the index alone (0007).
    Index(f"ix_users_lower_{_field}_id", ascii_order(User.__table__.c[_field]), User.id,
          postgresql_include=[_field])
    _column: ColumnElement[str] = ascii_lower(User.__table__.c[_field])
    # PostgreSQL only: pg_trgm serves LIKE '%needle%' (SQLite has the FTS5 table below).
    Index(
        f"ix_users_{_field}_trgm",
        _column.label(f"{_field}_trgm"),
        postgresql_using="gin",
        postgresql_ops={f"{_field}_trgm": "gin_trgm_ops"},
        info={"dialect": "postgresql"},
    ).ddl_if(dialect="postgresql")

# SQLite only, not modelled: the FTS5 trigram table over username and email (external
# content: the rows stay in users) and the shadow tables FTS5 keeps for it.
SQLITE_FTS_TABLES = frozenset(
    {"users_fts", "users_fts_data", "users_fts_idx", "users_fts_docsize", "users_fts_config"}
)


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's autogenerate filter: compare everything but the FTS5 tables, which
    the models cannot declare (pass it as ``include_name`` to ``compare_metadata`` or
    ``Migrate``)."""
    return not (type_ == "table" and name in SQLITE_FTS_TABLES)


USER_FIELDS = ("id", "username", "email", "role", "active", "version", "created_at", "updated_at")


def user_payload(row: dict[str, Any]) -> dict[str, Any]:
    """Normalise a user row (ORM object fields, or a trigger's JSON) to the public shape."""
    out = {field: row.get(field) for field in USER_FIELDS}
    out["active"] = bool(out["active"]) if out["active"] is not None else None
    for field in ("created_at", "updated_at"):
        ts = parse_timestamp(out[field])
        out[field] = ts.isoformat() if ts else None
    return out


class LoginSession(db.Model):
    """One login in a browser, named by its cookies (``User.get_id``); only the SHA-256
    of its key is stored. Logging out deletes it; it also ends when its user's
    ``session_epoch`` moves on, and at ``expires_at``."""

    __tablename__ = "login_sessions"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")

    hash = staticmethod(secret_digest)

    @classmethod
    def issue(cls, user: User, lifetime: timedelta) -> tuple[ApiToken, str]:
        """A new token row (not yet added) and the plain token, shown once.

        The prefix makes a leaked token easy to recognise, and keeps it from starting
        with ``-``, which a shell command (``flask tokens revoke TOKEN``) would read as
        an option.
        """
        plain = "lc_" + secrets.token_urlsafe(32)
        return cls(user=user, token_hash=cls.hash(plain), expires_at=utcnow() + lifetime), plain


class UserChange(db.Model):
    """One insert, update or delete of ``users``, written by database triggers.

    ``cursor`` only grows and is never reused; ``row_after`` is the user after the change
    (null for a delete), ``row_before`` the user before it (null for an insert).
    """

    __tablename__ = "user_changes"

    cursor: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(6))
    user_id: Mapped[int] = mapped_column(Integer)
    row_after: Mapped[dict | None] = mapped_column(JSON)
    row_before: Mapped[dict | None] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16), server_default="sql")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.current_timestamp(), index=True
    )

    __table_args__ = (
        Index("ix_user_changes_user_id_cursor", "user_id", "cursor"),  # a user's history
        {"sqlite_autoincrement": True},
    )


class ChangeContext(db.Model):
    """Who is writing, for the SQLite triggers (PostgreSQL uses a transaction setting).

    The app fills the one row inside its write transaction and empties it before
    commit; SQLite's single writer means no other connection ever sees it. The update
    trigger (migration 0006) marks its own version bump with a row of id ``-user_id``
    while the bump runs.
    """

    __tablename__ = "change_context"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str | None] = mapped_column(String(64))
    origin: Mapped[str | None] = mapped_column(String(16))


class LiveState(db.Model):
    """Small key/value facts of the live feed, such as the pruned-through cursor."""

    __tablename__ = "live_state"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ChatMessage(db.Model):
    """A chat message: to a room, or privately to one user (``recipient_id``)."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        UniqueConstraint("sender_id", "client_id", name="uq_chat_messages_sender_client_id"),
        Index("ix_chat_messages_room_id", "room", "id"),
        Index("ix_chat_messages_recipient_id_id", "recipient_id", "id"),
        Index("ix_chat_messages_stream_seq", "stream", "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room: Mapped[str | None] = mapped_column(String(64))
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The room's or the conversation's stream and this message's number in it (0008).
    stream: Mapped[str] = mapped_column(String(80))
    seq: Mapped[int] = mapped_column(BigInteger)

    sender: Mapped[User] = relationship(foreign_keys=[sender_id])
    recipient: Mapped[User | None] = relationship(foreign_keys=[recipient_id])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "room": self.room,
            "user": self.sender.username,
            "to": self.recipient.username if self.recipient else None,
            "text": self.text,
            "client_id": self.client_id,
            "ts": self.created_at.isoformat(),
        }


class ChatStream(db.Model):
    """The last ``seq`` given in one chat stream (a room or a private conversation)."""

    __tablename__ = "chat_streams"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class UserCount(db.Model):
    """How many users have this role and active flag, kept by triggers (migration 0003)
    so that totals never count the users table."""

    __tablename__ = "user_counts"

    role: Mapped[str] = mapped_column(String(10), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class ChangeMinute(db.Model):
    """How many changes of users were logged in one minute, kept by a trigger on
    user_changes (migration 0003) for the dashboard's chart."""

    __tablename__ = "change_minutes"

    # Unix seconds // 60 of the change's created_at.
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
