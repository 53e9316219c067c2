"""What a chat event may carry: room names, message text, client ids, and the rate limit."""

from __future__ import annotations

import re
from typing import Any

from app.realtime import ratelimit
from app.realtime.errors import ClientError

ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # whole names: fullmatch
# "user-<id>" is the private room of user <id>; "user:<id>" is the room every socket of
# that user is in (private messages go there), so it is never joinable at all.
PRIVATE_ROOM_RE = re.compile(r"user[-:](\d+)")
MAX_TEXT = 4000
MAX_CLIENT_ID = 64
HISTORY_SIZE = 50


def payload(data: Any) -> dict[str, Any]:
    """The event's payload, which must be a JSON object."""
    if not isinstance(data, dict):
        raise ClientError("payload must be an object")
    return data


def quoted(value: Any) -> str:
    """A client's value quoted in an error answer, if it is name-sized (an answer never
    echoes a large payload back)."""
    text = repr(value)
    return text if len(text) <= 40 else "(not a username)"


def room_name(value: Any, user_id: int) -> str:
    """A room the user may join: the name rules, and nobody else's private room."""
    if not isinstance(value, str):
        raise ClientError("room must be a string")
    private = PRIVATE_ROOM_RE.fullmatch(value)
    if private and int(private.group(1)) != user_id:
        raise ClientError("you cannot join another user's private room")
    if not ROOM_RE.fullmatch(value):
        raise ClientError("bad room name: 1 to 32 letters, digits, '_' or '-'")
    return value


def message_text(value: Any) -> str:
    """Non-blank text of at most ``MAX_TEXT`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise ClientError("text must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise ClientError(f"text too long: at most {MAX_TEXT} characters")
    return value


def client_id(value: Any) -> str | None:
    """The optional client-made message id that makes a retry harmless."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID:
        raise ClientError(f"id must be a string of 1 to {MAX_CLIENT_ID} characters")
    return value


class TokenBucket(ratelimit.TokenBucket):
    """A connection's chat messages: ``rate`` per second on average, bursts of ``burst``."""

    def __init__(self, rate: float = 5.0, burst: int = 10) -> None:
        super().__init__(rate, burst)

    def check(self) -> None:
        """Spend one token or raise the rate-limit error."""
        if not self.take():
            raise ClientError(f"rate limit: at most {self.rate:g} messages per second")
