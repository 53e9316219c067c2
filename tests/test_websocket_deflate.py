"""WebSocket compression (permessage-deflate) on a real server: negotiated when offered,
messages compressed both ways, a compressed message bounded once inflated, offers the
server cannot honour declined, and the setting that turns it off."""

from __future__ import annotations

import json
import zlib

import pytest

from app import deflate
from tests.raw_ws import RawWebSocket
from tests.test_chat_server import user_token
from tests.test_websocket_limits import LIMIT

pytestmark = pytest.mark.server
OFFER = "permessage-deflate; client_max_window_bits"
ACCEPTED = "Sec-WebSocket-Extensions: " + deflate.ACCEPTED


def compress(data: bytes) -> bytes:
    """A client's compressed message payload (RFC 7692: the sync flush tail left off)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def chat_socket(port: int, name: str, offer: str | None = OFFER) -> RawWebSocket:
    headers = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    ws = RawWebSocket(port, f"/ws/chat/lobby?token={user_token(name)}", extra_headers=headers)
    assert ws.status == 101
    return ws


def next_message(ws: RawWebSocket) -> tuple[dict, bool, int]:
    """The next text frame: its JSON (inflated if compressed), whether it was compressed,
    and its size on the wire."""
    while True:
        opcode, payload = ws.recv_frame()
        if opcode == 8:
            raise ConnectionError(f"closed: {payload!r}")
        if opcode == 1:
            break
    text = RawWebSocket.inflate(payload) if ws.compressed else payload
    return json.loads(text), ws.compressed, len(payload)


def test_messages_go_both_ways_compressed_to_clients_that_offer_it(app, live_server):
    """A client offering permessage-deflate sends a compressed message and gets the
    room's messages compressed (small ones as they are); a client that did not offer it
    gets the same messages plain, on the same server."""
    plain = chat_socket(live_server.port, "paula", offer=None)
    packed = chat_socket(live_server.port, "wendy")
    assert ACCEPTED in packed.response
    assert "Sec-WebSocket-Extensions" not in plain.response

    text = "all work and no play makes a dull chat " * 50
    packed.sock.sendall(RawWebSocket.frame(
        compress(json.dumps({"text": text}).encode()), compressed=True))
    message, compressed, size = next_message(packed)
    assert message["text"] == text and message["user"] == "wendy"
    assert compressed and size < len(text) / 5
    message, compressed, size = next_message(plain)
    assert message["text"] == text and not compressed and size > len(text)

    plain.send_text(json.dumps({"text": "short"}))
    message, compressed, _ = next_message(packed)
    assert message["text"] == "short" and not compressed  # under deflate.MIN_SIZE
    packed.close()
    plain.close()


def test_a_message_that_inflates_past_the_limit_is_closed_with_1009(app, live_server):
    """A few hundred compressed bytes announcing four times the message size limit: the
    connection is closed as for a plain message that big, and another client lives on."""
    bystander = chat_socket(live_server.port, "bystander")
    bomb = chat_socket(live_server.port, "bomber")
    payload = compress(json.dumps({"text": "x" * (4 * LIMIT)}).encode())
    assert len(payload) < 1024
    bomb.sock.sendall(RawWebSocket.frame(payload, compressed=True))
    assert bomb.wait_close(5) == (1009, "message too big")
    bystander.send_text(json.dumps({"text": "still here"}))
    assert next_message(bystander)[0]["text"] == "still here"
    bomb.close()
    bystander.close()


def test_bad_compressed_data_and_unnegotiated_compression_are_protocol_errors(app, live_server):
    packed = chat_socket(live_server.port, "garbled")
    packed.sock.sendall(RawWebSocket.frame(b"\xff\xfenot deflate", compressed=True))
    assert packed.wait_close(5)[0] == 1002
    packed.close()
    plain = chat_socket(live_server.port, "sneaky", offer=None)
    plain.sock.sendall(RawWebSocket.frame(compress(b'{"text": "hi"}'), compressed=True))
    assert plain.wait_close(5) == (1002, "protocol error")
    plain.close()


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_max_window_bits=10",  # a smaller window than we compress with
    "permessage-deflate; some_future_parameter",
    "x-webkit-deflate-frame",
])
def test_offers_the_server_cannot_honour_are_declined(app, live_server, offer):
    ws = chat_socket(live_server.port, "picky", offer=offer)
    assert "Sec-WebSocket-Extensions" not in ws.response
    text = "y" * 3000
    ws.send_text(json.dumps({"text": text}))
    message, compressed, _ = next_message(ws)
    assert message["text"] == text and not compressed
    ws.close()


@pytest.mark.parametrize("offers, answer", [
    ("permessage-deflate; server_max_window_bits=9, permessage-deflate; "
     "server_no_context_takeover; client_max_window_bits=12", deflate.ACCEPTED),
    ("permessage-deflate; server_max_window_bits=15",  # accepted by saying it back
     deflate.ACCEPTED + "; server_max_window_bits=15"),
    ("permessage-deflate; client_max_window_bits", deflate.ACCEPTED),
    ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
    ("permessage-deflate; server_no_context_takeover=1", None),
    ("permessage-deflate; client_max_window_bits=7", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("x-webkit-deflate-frame, permessage-deflate", deflate.ACCEPTED),
])
def test_offers_are_answered_as_rfc_7692_says(offers, answer):
    """The first valid offer is taken; repeated parameters, values on flags and window
    sizes outside 8-15 make an offer invalid (declined, not guessed at)."""
    assert deflate.negotiate(offers) == answer


def test_compression_can_be_turned_off(app, server_factory):
    server = server_factory(env={"WEBSOCKET_COMPRESSION": "0"})
    ws = chat_socket(server.port, "config")
    assert "Sec-WebSocket-Extensions" not in ws.response
    ws.send_text(json.dumps({"text": "z" * 3000}))
    assert next_message(ws)[1] is False
    ws.close()
