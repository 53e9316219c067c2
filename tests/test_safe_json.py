"""The JSON reader of every socket packet, plain WebSocket frame and API body."""

from __future__ import annotations

import pytest

from app.realtime import safe_json


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
def test_json_with_nul_or_too_deep_is_refused_in_any_encoding_json_reads(encoding):
    """The API's bodies and the plain WebSocket's frames may come as bytes in any of
    JSON's encodings: the checks read them as the parser does."""
    with pytest.raises(safe_json.HasNul):
        safe_json.loads('{"text": "nul\\u0000"}'.encode(encoding))
    with pytest.raises(safe_json.TooDeep):
        safe_json.loads(("[" * 40 + "]" * 40).encode(encoding))
    assert safe_json.loads('{"text": "\\\\u0000 is how JSON spells NUL"}'.encode(encoding)) == {
        "text": "\\u0000 is how JSON spells NUL"}
