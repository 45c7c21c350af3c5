"""JSON-RPC plain functions (tactful.lsp.jsonrpc): body parsing, ids, envelope checks."""

from __future__ import annotations

import pytest

from tactful.lsp import jsonrpc


def test_parse_body_refuses_what_is_not_utf8_json() -> None:
    with pytest.raises(jsonrpc.Refusal) as info:
        jsonrpc.parse_body(b'{"jsonrpc": "2.0", "id": 8, "method": "\xff"}')
    assert info.value.code == jsonrpc.PARSE_ERROR and info.value.msg_id == 8
    assert "not UTF-8" in info.value.message
    for body in (b"{", b"[NaN]", b"[" * 100000):
        with pytest.raises(jsonrpc.Refusal) as info:
            jsonrpc.parse_body(body)
        assert info.value.code == jsonrpc.PARSE_ERROR and info.value.msg_id is None


def test_parse_body_replaces_lone_surrogates_but_keeps_pairs() -> None:
    obj = jsonrpc.parse_body(b'{"\\ud800k": ["a\\udfff", "\\ud83d\\ude00"]}')
    assert obj == {"\ufffdk": ["a\ufffd", "😀"]}


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        ({"method": "m", "id": 1}, 1),
        ({"method": "m", "id": "x"}, "x"),
        ({"method": "m", "id": 0}, 0),
        ({"method": "m", "id": True}, None),
        ({"method": "m", "id": 1.5}, None),
        ({"method": "m"}, None),
        ({"id": 1, "result": None}, None),
        ([1], None),
    ],
)
def test_request_id(obj: object, want: object) -> None:
    assert jsonrpc.request_id(obj) == want


def test_envelope_problem() -> None:
    ok = {"jsonrpc": "2.0", "method": "m", "params": {}}
    assert jsonrpc.envelope_problem(ok) is None
    assert "jsonrpc" in str(jsonrpc.envelope_problem({**ok, "jsonrpc": "1.0"}))
    assert "method" in str(jsonrpc.envelope_problem({**ok, "method": 3}))
    assert "params" in str(jsonrpc.envelope_problem({**ok, "params": 3}))


def test_well_formed_error_and_short_error() -> None:
    assert jsonrpc.well_formed_error({"id": 1, "result": 2})
    assert jsonrpc.well_formed_error({"id": 1, "error": {"code": 1, "message": "m"}})
    assert not jsonrpc.well_formed_error({"id": 1, "error": {"code": "1", "message": "m"}})
    assert not jsonrpc.well_formed_error({"id": 1, "error": None})
    text = jsonrpc.short_error(ValueError("line one\nline two" + "x" * 500))
    assert text == "ValueError: line one"
    assert len(jsonrpc.short_error(ValueError("y" * 500))) == 200
