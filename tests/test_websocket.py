"""The plain WebSocket endpoint ``/ws/chat/<room>`` on a real server, with a Socket.IO peer."""

from __future__ import annotations

import json

import pytest
import websocket
from sqlalchemy import select

from app.extensions import db
from app.models import ChatMessage, User
from app.users.service import update_user
from tests.test_chat_server import Peer, user_token

pytestmark = pytest.mark.server


@pytest.fixture
def ws_url(app, live_server):
    return f"ws://127.0.0.1:{live_server.port}/ws/chat"


def receive(ws: websocket.WebSocket) -> dict:
    return json.loads(ws.recv())


def assert_policy_close(ws: websocket.WebSocket, reason: str) -> None:
    """The next frame closes the connection with 1008 and this reason."""
    opcode, payload = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert payload[:2] == (1008).to_bytes(2, "big") and reason in payload[2:].decode()


def test_websocket_and_socketio_clients_talk_together(app, live_server, ws_url):
    sio = Peer(live_server.url, "sam")
    ws = websocket.create_connection(f"{ws_url}/lobby?token={user_token('wendy')}", timeout=5)
    try:
        sio.call("join", {"room": "lobby"})
        sio.wait_for("presence", {"room": "lobby", "users": ["sam", "wendy"]})
        ws.send(json.dumps({"text": "hello from a plain socket"}))
        frame = receive(ws)  # the room's copy of its own message
        assert (frame["room"], frame["user"], frame["text"]) == (
            "lobby", "wendy", "hello from a plain socket")
        assert "ts" in frame
        assert sio.wait_for("message")["text"] == "hello from a plain socket"

        sio.call("message", {"room": "lobby", "text": "hello back"})
        frame = receive(ws)
        assert (frame["user"], frame["text"]) == ("sam", "hello back")

        ws.send("not json")
        assert "JSON objects" in receive(ws)["error"]
        ws.send('{"text": ' + "[" * 5000 + "]" * 5000 + "}")  # nested past the parser's depth
        assert "nested deeper than 32" in receive(ws)["error"]
        ws.send(json.dumps({"text": "nul\x00"}))
        assert "NUL" in receive(ws)["error"]
        ws.send(json.dumps({"text": ""}))
        assert "non-empty" in receive(ws)["error"]
        history = sio.call("history", {"room": "lobby"})["messages"]
        assert [m["user"] for m in history] == ["wendy", "sam"]
    finally:
        ws.close()
    sio.wait_for("status", {"room": "lobby", "text": "wendy left"})
    sio.client.disconnect()


def test_bearer_header_and_retry_with_the_same_id(app, live_server, ws_url):
    token = user_token("wendy")
    ws = websocket.create_connection(f"{ws_url}/room-1", timeout=5,
                                     header=[f"Authorization: Bearer {token}"])
    try:
        ws.send(json.dumps({"text": "once", "id": "w-1"}))
        first = receive(ws)
        ws.send(json.dumps({"text": "once", "id": "w-1"}))
        assert receive(ws) == first  # the stored message again, not a second one
    finally:
        ws.close()


def test_refused_with_an_error_frame_and_a_policy_close(app, live_server, ws_url):
    token = user_token("eve")
    for path, error in [
        ("/lobby?token=wrong", "authentication required"),
        (f"/bad%20room?token={token}", "bad room name"),
        (f"/user-999?token={token}", "another user's private room"),
    ]:
        ws = websocket.create_connection(ws_url + path, timeout=5)
        try:
            assert error in receive(ws)["error"]
            assert_policy_close(ws, error)
        finally:
            ws.shutdown()  # after the server's close, close() would leave the socket open


def test_a_revoked_token_closes_its_plain_websocket_at_the_next_sweep(app, live_server,
                                                                     ws_url):
    """Revoked elsewhere (here: as the CLI does, in another process than the server's)."""
    from app.auth.tokens import revoke_token

    token = user_token("bob")
    ws = websocket.create_connection(f"{ws_url}/lobby?token={token}", timeout=5)
    try:
        ws.send(json.dumps({"text": "before"}))
        assert receive(ws)["text"] == "before"
        assert revoke_token(token)
        assert receive(ws) == {"error": "token revoked or expired"}  # within the timeout
        assert_policy_close(ws, "token revoked or expired")
    finally:
        ws.shutdown()


def test_deactivated_user_is_refused_and_closed(app, live_server, ws_url):
    """The bridge reads the user again before storing each message (whether or not the
    live feed closed the socket first, the client sees the same frames)."""
    ws = websocket.create_connection(f"{ws_url}/lobby?token={user_token('bob')}", timeout=5)
    try:
        ws.send(json.dumps({"text": "before"}))
        assert receive(ws)["text"] == "before"
        bob = db.session.scalar(select(User).filter_by(username="bob"))
        update_user(bob, {"active": False}, bob.version)
        ws.send(json.dumps({"text": "after"}))
        assert receive(ws) == {"error": "account deactivated"}
        assert_policy_close(ws, "account deactivated")
    finally:
        ws.shutdown()
    db.session.rollback()
    assert list(db.session.scalars(select(ChatMessage.text))) == ["before"]
