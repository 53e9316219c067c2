"""WebSocket compression (permessage-deflate, RFC 7692) for the server's handler.

Negotiated without context takeover either way, so that a message is compressed once
for every socket it goes to (a change frame fanned out to thousands of subscribers costs
one compression, and about a seventh of its bytes on each socket), and no connection
keeps a compression window: an idle connection costs no memory for it. A client's
compressed message is inflated at most to the message size limit.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

# The answer to an acceptable offer. Browsers, ws (Node) and Python's websockets accept
# both parameters whether or not they offered them (RFC 7692, 7.1.1).
ACCEPTED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
MIN_SIZE = 1024  # smaller messages go out as they are: compressing saves too little
LEVEL = 1  # zlib's fastest: 7x smaller change frames here, twice as fast as the default
SHARED = 256 * 1024  # messages up to this size are remembered with their compression
_TAIL = b"\x00\x00\xff\xff"  # every compressed message ends with it, left off the wire
_FLAGS = {"server_no_context_takeover", "client_no_context_takeover"}
_WINDOW_BITS = {str(bits) for bits in range(8, 16)}


class InflateError(ValueError):
    """A compressed message that is not valid deflate data."""


class TooBig(ValueError):
    """A compressed message that inflates past the size limit."""


def negotiate(offers: str) -> str | None:
    """The Sec-WebSocket-Extensions answer to a client's header, or None (no compression).

    The first valid permessage-deflate offer (RFC 7692, 7) that leaves the server its
    full 32 KB window is accepted; any other extension is declined.
    """
    for offer in offers.split(","):
        name, *parameters = (part.strip() for part in offer.split(";"))
        if name.lower() == "permessage-deflate" and (seen := _parameters(parameters)) is not None:
            if "server_max_window_bits" not in seen:
                return ACCEPTED
            if seen["server_max_window_bits"] == "15":  # accepted by saying it back
                return ACCEPTED + "; server_max_window_bits=15"
    return None


def _parameters(parameters: list[str]) -> dict[str, str | None] | None:
    """An offer's parameters, or None if the RFC says to decline it: an unknown or
    repeated name, a value on a flag, a window size outside 8-15."""
    seen: dict[str, str | None] = {}
    for parameter in parameters:
        key, equals, value = (part.strip() for part in parameter.partition("="))
        key, value = key.lower(), value.strip('"') if equals else None
        if key in seen:
            return None
        if key in _FLAGS:
            if value is not None:
                return None
        elif key == "server_max_window_bits":
            if value not in _WINDOW_BITS:
                return None
        elif key != "client_max_window_bits" or value not in (None, *_WINDOW_BITS):
            return None
        seen[key] = value
    return seen


def deflate(message: str | bytes | bytearray) -> bytes:
    """A message's compressed payload; the same message is compressed once."""
    if len(message) <= SHARED and not isinstance(message, bytearray):
        return _deflate_shared(message)
    return _deflate(message)


@lru_cache(maxsize=64)
def _deflate_shared(message: str | bytes) -> bytes:
    # A room's event is encoded once: the direct fan-out and Engine.IO's writers (the
    # packet caches its encoding) hand every socket the same object, its hash cached.
    return _deflate(message)


def _deflate(message: str | bytes | bytearray) -> bytes:
    data = message.encode() if isinstance(message, str) else bytes(message)
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return payload[:-len(_TAIL)]


def inflate(payload: bytes | bytearray, limit: int) -> bytes:
    """A client's compressed message, at most ``limit`` bytes once inflated."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        message = inflater.decompress(bytes(payload) + _TAIL, limit + 1)
    except zlib.error as exc:
        raise InflateError(str(exc)) from exc
    if len(message) > limit:
        raise TooBig(f"a compressed message of more than {limit} bytes")
    return message
