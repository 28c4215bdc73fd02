"""The two websocket wire protocols, both ways, against the test client's independent encoders."""

from __future__ import annotations

import json

import pytest
from kernel_ws import decode_legacy_binary, decode_v1, encode_legacy_binary, encode_v1

from himalia import BadRequest, KernelMessage
from himalia.wire import from_legacy_binary, from_legacy_text, from_v1, to_legacy, to_v1

MSG = {"channel": "shell", "header": {"msg_id": "m1", "msg_type": "comm_msg", "session": "s"},
       "parent_header": {}, "metadata": {"a": 1}, "content": {"data": "é"}, "buffers": [b"\x00\xff", b""]}


def test_v1_round_trip():
    msg = from_v1(encode_v1(MSG))
    assert msg.channel == "shell" and msg.msg_type == "comm_msg"
    assert json.loads(msg.content) == {"data": "é"} and msg.buffers == [b"\x00\xff", b""]
    assert decode_v1(to_v1(msg)) == MSG


def test_legacy_round_trip():
    msg = from_legacy_binary(encode_legacy_binary(MSG))
    assert msg.buffers == [b"\x00\xff", b""]
    frame, binary = to_legacy(msg)
    assert binary
    out = decode_legacy_binary(frame)
    assert out["msg_id"] == "m1" and out["msg_type"] == "comm_msg" and out["content"] == MSG["content"]
    text = {k: v for k, v in MSG.items() if k != "buffers"}
    msg = from_legacy_text(json.dumps(text))
    frame, binary = to_legacy(msg)
    assert not binary and json.loads(frame)["header"] == MSG["header"]


def test_content_passes_through_untouched():
    raw = b'{"z": 1,   "a": [1.50, "\\u00e9"]}'
    msg = KernelMessage("iopub", b'{"msg_id":"x","msg_type":"stream"}', b"{}", b"{}", raw)
    assert raw in to_v1(msg) and raw in to_legacy(msg)[0]


@pytest.mark.parametrize("frame", [b"", b"\x01", b"\x06" + b"\x00" * 7 + b"\xff" * 48,
                                   encode_v1({**MSG, "channel": "nope"}),
                                   encode_v1({**MSG, "header": {"msg_type": "x"}})])
def test_malformed_v1_is_a_bad_request(frame):
    with pytest.raises(BadRequest):
        from_v1(frame)


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"header": {"msg_id": "a", "msg_type": "b"}}',
                                  '{"header": 1, "channel": "shell"}'])
def test_malformed_legacy_is_a_bad_request(text):
    with pytest.raises(BadRequest):
        from_legacy_text(text)
