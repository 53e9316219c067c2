"""``/ws/chat/<room>``: plain WebSocket clients in the same rooms as Socket.IO clients.

Under ``python manage.py run`` gevent-websocket upgrades the request before the view
runs and puts the socket in ``environ["wsgi.websocket"]``; other servers get a 400.
Frames in: ``{"text": ..., "id"?: ...}``; frames out: room messages ``{"room", "user",
"text", "ts", ...}`` and ``{"error": reason}`` answers.
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

from flask import Response, request

from app.auth.tokens import user_for_token
from app.chat import store
from app.chat.errors import log
from app.chat.namespace import chat_namespace
from app.chat.rules import ClientError, TokenBucket, client_id, message_text, payload, room_name
from app.extensions import db

POLICY_VIOLATION = 1008


def bearer_token() -> str | None:
    """The token of ``?token=`` or of an ``Authorization: Bearer`` header."""
    if token := request.args.get("token"):
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def serve(room: str) -> Response:
    """Run one plain WebSocket connection until the client closes it."""
    ws = request.environ.get("wsgi.websocket")
    if ws is None:
        return Response("WebSocket upgrade required; serve with `python manage.py run`\n",
                        status=400, mimetype="text/plain")
    user = user_for_token(bearer_token())
    try:
        if user is None:
            raise ClientError("authentication required: ?token= or Authorization: Bearer")
        room = room_name(room, user.id)
    except ClientError as exc:
        ws.send(json.dumps({"error": str(exc)}))
        close(ws, POLICY_VIOLATION, str(exc))
        return Response(status=200)
    me = {"id": user.id, "username": user.username}
    db.session.remove()  # the connection may live for hours: give the DB connection back
    hub = chat_namespace().hub
    conn = f"ws:{uuid.uuid4().hex}"
    hub.join(conn, me["username"], room, ws)
    bucket = TokenBucket()
    try:
        while (frame := ws.receive()) is not None:
            answer = handle_frame(frame, me, room, bucket)
            if answer is not None:
                ws.send(json.dumps(answer))
    finally:
        hub.leave(conn, room)
    return Response(status=200)


def close(ws: Any, code: int, reason: str) -> None:
    """Close with a status code (gevent-websocket's ``close`` sends the reason alone)."""
    ws.send_frame(struct.pack("!H", code) + reason.encode()[:120], opcode=ws.OPCODE_CLOSE)
    ws.closed = True


def handle_frame(frame: Any, me: dict[str, Any], room: str,
                 bucket: TokenBucket) -> dict[str, Any] | None:
    """Store and publish one message frame; the answer to send back, if any.

    A bad frame gets ``{"error": reason}``; a retried ``id`` gets the stored message.
    """
    try:
        try:
            data = payload(json.loads(frame))
        except (TypeError, ValueError):
            raise ClientError("frames must be JSON objects like {\"text\": \"hi\"}") from None
        text, cid = message_text(data.get("text")), client_id(data.get("id"))
        bucket.check()
        message, new = store.save_message(me["id"], text, room=room, client_id=cid)
        out = message.to_dict()
    except ClientError as exc:
        return {"error": str(exc)}
    except Exception:
        log.exception("websocket frame failed: namespace=%s event=message user=%s room=%s",
                      request.path, me["username"], room)
        return {"error": "internal server error"}
    finally:
        db.session.remove()
    if not new:
        return out
    chat_namespace().hub.publish(out)
    return None
