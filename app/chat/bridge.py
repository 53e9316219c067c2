"""``/ws/chat/<room>``: plain WebSocket clients in the same rooms as Socket.IO clients.

Under ``python manage.py run`` gevent-websocket upgrades the request before the view
runs and puts the socket in ``environ["wsgi.websocket"]``; other servers get a 400.
Frames in: ``{"text": ..., "id"?: ...}``; frames out: the room's messages from every
process (``{"id", "seq", "room", "user", "text", "ts", ...}``, by ``app.chat.relay``)
and ``{"error": reason}`` answers.

A deactivated or deleted user's socket is closed with 1008 "account deactivated": at
once by ``app.chat.hub.close_user_bridges`` (called with the Socket.IO disconnections),
and in any case before their next message is stored.

Nothing here imports ``app.auth.sockets`` (which imports ``app.chat.hub``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Response, current_app, request

from app.auth.tokens import bearer_token, user_for_token
from app.chat import store
from app.chat.hub import ACCOUNT_GONE, POLICY_VIOLATION, Bridge, chat_hub, close_socket
from app.chat.relay import chat_relay
from app.chat.rules import ClientError, TokenBucket, client_id, message_text, payload, room_name
from app.extensions import db, socketio
from app.models import User, secret_digest
from app.realtime import safe_json

log = logging.getLogger("app.realtime")


class AccountGone(Exception):
    """The socket's user was deactivated or deleted since it connected."""


def bridge_token() -> str | None:
    """The token of ``?token=`` (browsers cannot set headers on a WebSocket), else the
    ``Authorization: Bearer`` header."""
    return request.args.get("token") or bearer_token()


def serve(room: str) -> Response:
    """Run one plain WebSocket connection until the client, or the server, closes it."""
    ws = request.environ.get("wsgi.websocket")
    if ws is None:
        return Response("WebSocket upgrade required; serve with `python manage.py run`\n",
                        status=400, mimetype="text/plain")
    token = bridge_token()
    user = user_for_token(token)
    try:
        if user is None:
            raise ClientError("authentication required: ?token= or Authorization: Bearer")
        room = room_name(room, user.id)
    except ClientError as exc:
        close_socket(ws, POLICY_VIOLATION, str(exc), error=str(exc))
        return Response(status=200)
    me = {"id": user.id, "username": user.username}
    # The live feed closes a deactivated user's sockets: make sure it runs here too.
    if (feed := current_app.extensions.get("live_feed")) is not None:
        feed.start()
    hub, relay = chat_hub(), chat_relay()
    relay.start(current_app._get_current_object())
    bridge = Bridge(f"ws:{uuid.uuid4().hex}", me["id"], room, ws,
                    send_timeout=current_app.config["CHAT_WS_SEND_TIMEOUT"],
                    token_hash=secret_digest(token))
    # No history is sent here: every message after this one comes as a frame.
    relay.open_room(room, lambda: hub.join(bridge.conn, me["username"], room, bridge))
    db.session.remove()  # the connection may live for hours: give the DB connection back
    bucket = TokenBucket()
    socketio.start_background_task(bridge.write)
    try:
        while not ws.closed and (frame := ws.receive()) is not None:
            if bridge.ending or ws.closed:  # closed (close_user_bridges) meanwhile
                break
            answer = handle_frame(frame, me, room, bucket)
            if answer is not None:
                bridge.send(safe_json.dumps(answer))
    except AccountGone:
        bridge.close(POLICY_VIOLATION, ACCOUNT_GONE, error=ACCOUNT_GONE)
    except OSError:
        pass  # gevent-websocket's WebSocketError: the socket died or was closed meanwhile
    finally:
        try:
            hub.leave(bridge.conn, room)
        finally:
            bridge.finish()
    return Response(status=200)


def still_active(user_id: int) -> bool:
    """Whether the user still exists and is active (one primary-key read)."""
    user = db.session.get(User, user_id)
    return user is not None and user.is_active


def handle_frame(frame: Any, me: dict[str, Any], room: str,
                 bucket: TokenBucket) -> dict[str, Any] | None:
    """Store and publish one message frame; the answer to send back, if any.

    A bad frame gets ``{"error": reason}``; a retried ``id`` gets the stored message.
    Raises AccountGone, storing nothing, when the user is no longer active.
    """
    try:
        if not still_active(me["id"]):
            raise AccountGone
        try:
            data = payload(safe_json.loads(frame))
        except (safe_json.TooDeep, safe_json.HasNul) as exc:
            raise ClientError(f"frame refused: {exc}") from None
        except (TypeError, ValueError):
            raise ClientError("frames must be JSON objects like {\"text\": \"hi\"}") from None
        text, cid = message_text(data.get("text")), client_id(data.get("id"))
        bucket.check()
        message, new = store.save_message(me["id"], text, room=room, client_id=cid)
        out = message.to_dict()
        if new:
            chat_relay().send(message)
    except ClientError as exc:
        return {"error": str(exc)}
    except AccountGone:
        raise
    except Exception:
        log.exception("websocket frame failed: namespace=%s event=message user=%s room=%s",
                      request.path, me["username"], room)
        return {"error": "internal server error"}
    finally:
        db.session.remove()
    return None if new else out
