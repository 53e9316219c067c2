"""Socket.IO error handling shared by the chat and playground namespaces.

``ClientError`` (a bad event: a bad payload, extra arguments, an unknown event) is
answered with ``{"error": reason}`` and logged nowhere; any other exception in a handler
is logged with the namespace, the event and the user and answered with ``{"error":
"internal server error", "event": name}``. Either answer goes in the acknowledgement
when the client asked for one, else as one ``error`` event; never both. The server goes
on serving.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from flask import request, session
from flask_socketio import ConnectionRefusedError, Namespace, SocketIO, emit

from app.auth.sockets import SESSION_KEY
from app.chat.rules import ClientError
from app.extensions import db
from app.live.acks import ack_requested

log = logging.getLogger("app.realtime")


def reject(reason: str) -> dict[str, str] | None:
    """The error answer: the ack when one was asked for, else an ``error`` event."""
    answer = {"error": reason}
    if ack_requested():
        return answer
    emit("error", answer)
    return None


def socket_error_handler(exc: Exception) -> dict[str, str] | None:
    """Answer a handler's exception; runs inside the event's request context.

    Registered per namespace by ``ReportingNamespace`` and usable as
    ``socketio.on_error_default`` for every other namespace.
    """
    db.session.rollback()
    if isinstance(exc, ClientError):
        return reject(str(exc))
    event = request.event["message"]
    log.error("socket handler failed: namespace=%s event=%s user=%s",
              request.namespace, event, session_user_name(), exc_info=exc)
    if event == "connect":
        raise ConnectionRefusedError("internal server error") from exc
    answer = {"error": "internal server error", "event": event}
    if ack_requested():
        return answer
    emit("error", answer)
    return None


def string_token(auth: Any) -> Any:
    """``auth`` with a token that is not a string taken out (it is then no credential),
    so that ``auth={"token": 123}`` is refused like a wrong token, not with a crash."""
    if isinstance(auth, dict) and not isinstance(auth.get("token"), str | None):
        return {key: value for key, value in auth.items() if key != "token"}
    return auth


def session_user_name() -> str:
    """The name of the socket's user, from its Socket.IO session."""
    return (session.get(SESSION_KEY) or {}).get("username", "anonymous")


class ReportingNamespace(Namespace):
    """A class-based namespace with its own error handler and answers to unknown events.

    ``socketio.on_error(namespace)`` keys handlers by namespace name, and Flask-SocketIO
    calls them inside the event's request context (so the sid, event and user are known);
    the namespace registers its handler when it is attached to the SocketIO object.
    """

    def _set_socketio(self, socketio: SocketIO) -> None:
        super()._set_socketio(socketio)
        socketio.on_error(self.namespace)(self.handle_error)

    def handle_error(self, exc: Exception) -> dict[str, str] | None:
        """Any exception escaping one of this namespace's handlers."""
        return socket_error_handler(exc)

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Answer an event nobody handles, or one with arguments its handler does not
        take, with an error instead of ignoring it or failing inside the handler.

        ``args`` is the sid, then what the client sent.
        """
        if event in ("connect", "disconnect"):
            return super().trigger_event(event, *args)
        handler = getattr(self, f"on_{event}", None)
        if handler is None:
            return self.socketio._handle_event(self._unknown, event, self.namespace, *args)
        try:
            inspect.signature(handler).bind(*args[1:])
        except TypeError:
            return self.socketio._handle_event(self._bad_arguments, event, self.namespace,
                                               *args)
        return super().trigger_event(event, *args)

    @staticmethod
    def _unknown(*args: Any) -> None:
        raise ClientError(f"unknown event {request.event['message']!r}")

    @staticmethod
    def _bad_arguments(*args: Any) -> None:
        event = request.event["message"]
        raise ClientError(f"{event!r} takes at most one argument, a payload object")
