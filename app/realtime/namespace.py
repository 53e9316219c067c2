"""The base class of every class-based namespace, and the handler of their exceptions.

``ClientError`` (a bad event: a bad payload, extra arguments, an unknown event) is
answered with ``{"error": reason}`` and logged nowhere; a database that fails (does not
answer, or stays locked by another program) is answered ``{"error": "unavailable: ...",
"event": name}``, as the HTTP side's 503; any other exception in a handler is logged with
the namespace, the event and the user and answered with ``{"error": "internal server
error", "event": name}``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from flask import request, session
from flask_socketio import ConnectionRefusedError, Namespace, SocketIO
from sqlalchemy.exc import InterfaceError, OperationalError

from app.auth.sockets import SESSION_KEY
from app.extensions import db
from app.health import outage_message
from app.realtime.errors import ClientError, reject

log = logging.getLogger("app.realtime")


def socket_error_handler(exc: Exception) -> dict[str, str] | None:
    """Answer a handler's exception; runs inside the event's request context.

    Registered per namespace by ``RealtimeNamespace`` and given to
    ``socketio.on_error_default`` for every other namespace.
    """
    db.session.rollback()
    if isinstance(exc, ClientError):
        return reject(str(exc))
    event = request.event["message"]
    if isinstance(exc, OperationalError | InterfaceError) and event != "connect":
        message = outage_message(exc)
        log.warning("socket handler: namespace=%s event=%s: %s", request.namespace, event,
                    message)
        return reject(f"unavailable: {message}", event=event)
    log.error("socket handler failed: namespace=%s event=%s user=%s",
              request.namespace, event, session_user_name(), exc_info=exc)
    if event == "connect":
        raise ConnectionRefusedError("internal server error") from exc
    return reject("internal server error", event=event)


def session_user_name() -> str:
    """The name of the socket's user, from its Socket.IO session."""
    return (session.get(SESSION_KEY) or {}).get("username", "anonymous")


@functools.cache
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    """A method's signature, worked out once (it costs more than a small event)."""
    return inspect.signature(function)


def _check_arguments(handler: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Raise TypeError unless ``handler`` takes ``args``."""
    function = getattr(handler, "__func__", None)
    if function is None:  # not a method
        inspect.signature(handler).bind(*args)
    else:
        _signature(function).bind(handler.__self__, *args)


class RealtimeNamespace(Namespace):
    """A namespace with the shared error handler and answers to events it cannot take.

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

        ``args`` is the sid, then what the client sent (``connect`` and ``disconnect``
        come from the server only: the packet guard refuses them from clients).
        """
        if event in ("connect", "disconnect"):
            return super().trigger_event(event, *args)
        handler = getattr(self, f"on_{event}", None)
        if handler is None:
            return self.socketio._handle_event(self._unknown, event, self.namespace, *args)
        try:
            _check_arguments(handler, args[1:])
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
