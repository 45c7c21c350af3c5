"""Strict parameter checks (tactful.lsp.validate) and the checked protocol in-process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from lsprotocol import converters
from pytest_lsp import client_capabilities

from tactful.lsp import validate

URI = "file:///tmp/a.py"


def change(text: Any) -> dict[str, Any]:
    return {"textDocument": {"uri": URI, "version": 2}, "contentChanges": [{"text": text}]}


def pos(line: Any, character: Any = 0) -> dict[str, Any]:
    return {
        "textDocument": {"uri": URI},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},
    }


@pytest.mark.parametrize(
    ("method", "params", "problem"),
    [
        ("textDocument/didChange", change(5), "text must be a string"),
        ("textDocument/didChange", change(None), "text must be a string"),
        ("textDocument/didChange", change("ok"), None),
        ("textDocument/inlineCompletion", pos(-1), "line must be in"),
        ("textDocument/inlineCompletion", pos(2**31), "line must be in"),
        ("textDocument/inlineCompletion", pos(True), "must be an integer"),
        ("textDocument/inlineCompletion", pos(1.0), "must be an integer"),
        ("textDocument/inlineCompletion", pos(2**31 - 1, 2**31 - 1), None),
        (
            "textDocument/completion",
            {"textDocument": {"uri": 5}, "position": {"line": 0, "character": 0}},
            "uri must be a string",
        ),
        (
            "textDocument/completion",
            {"position": {"line": 0, "character": 0}},
            "textDocument is missing",
        ),
        (
            "textDocument/didOpen",
            {"textDocument": {"uri": URI, "languageId": "python", "version": "1", "text": ""}},
            "version must be an integer",
        ),
        (
            "workspace/executeCommand",
            {"command": "tactful.toggle", "arguments": ["false"]},
            "arguments must be",
        ),
        (
            "workspace/executeCommand",
            {"command": "tactful.toggle", "arguments": [0]},
            "arguments must be",
        ),
        ("workspace/executeCommand", {"command": "tactful.toggle", "arguments": [False]}, None),
        ("workspace/executeCommand", {"command": "tactful.toggle"}, None),
        (
            "workspace/executeCommand",
            {"command": "tactful.replayReport", "arguments": [3]},
            "arguments must be",
        ),
        ("workspace/executeCommand", {"command": 7}, "command must be a string"),
        ("shutdown", None, None),
        ("tactful/unknown", {"anything": [1, 2]}, None),
    ],
)
def test_check_message(method: str, params: Any, problem: str | None) -> None:
    got = validate.check_message(method, params)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got, got


@pytest.mark.parametrize("client", ["visual-studio-code", "neovim"])
def test_real_clients_initialize_params_pass(client: str) -> None:
    caps = converters.get_converter().unstructure(client_capabilities(client))
    params = {
        "processId": 1,
        "rootUri": None,
        "capabilities": caps,
        "initializationOptions": {"x": 1},
    }
    assert validate.check_message("initialize", params) is None


async def test_protocol_in_process_rejects_without_coercing() -> None:
    """didChange with "text": 5 leaves the document as it was; every request gets its answer."""
    from tactful.lsp.server import create_server

    server = create_server()
    sent: list[dict[str, Any]] = []

    class W:
        def write(self, data: bytes) -> None:
            sent.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))

        def close(self) -> None:
            pass

    proto = server.protocol
    proto.set_writer(W())

    def rx(obj: Any) -> None:
        proto.receive_body(obj if isinstance(obj, bytes) else json.dumps(obj).encode())

    def reply(msg_id: Any) -> dict[str, Any]:
        return next(m for m in sent if m.get("id") == msg_id and "method" not in m)

    rx(
        {
            "jsonrpc": "2.0",
            "id": "early",
            "method": "workspace/executeCommand",
            "params": {"command": "tactful.status"},
        }
    )
    assert reply("early")["error"]["code"] == -32002
    rx(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}},
        }
    )
    assert "result" in reply(1)
    rx(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}},
        }
    )
    assert reply(2)["error"]["code"] == -32600
    rx(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {
                "textDocument": {
                    "uri": URI,
                    "languageId": "python",
                    "version": 1,
                    "text": "x = 1\n",
                }
            },
        }
    )
    rx({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": change(5)})
    doc = server.documents.get(URI)
    assert doc is not None and doc.text == "x = 1\n"
    # A lone surrogate in the URI and the text: replaced, the document is usable.
    rx(
        b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": "file:///tmp/\\ud800.py", "languageId": "python", "version": 1, "text": "a\\udfff"}}}'
    )
    doc = server.documents.get("file:///tmp/\ufffd.py")
    assert doc is not None and doc.text == "a\ufffd"
    rx(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "workspace/executeCommand",
            "params": {"command": "tactful.toggle", "arguments": ["false"]},
        }
    )
    assert reply(3)["error"]["code"] == -32602
    assert server.settings.enable
    rx({"jsonrpc": "2.0", "id": 4, "method": "textDocument/nonsense"})
    assert reply(4)["error"]["code"] == -32601
    rx({"jsonrpc": "1.0", "id": 5, "method": "shutdown"})
    assert reply(5)["error"]["code"] == -32600
    rx({"jsonrpc": "2.0", "id": 6.5, "method": "shutdown"})
    assert sent[-1]["error"]["code"] == -32600 and sent[-1]["id"] is None
    rx(b'{"jsonrpc": "2.0", "id": 7, "method": "shutdown", "params": 3}')
    assert reply(7)["error"]["code"] == -32600
    rx(b"[1, 2]")
    assert sent[-1]["error"]["code"] == -32600
    rx(b'{"jsonrpc": "2.0", "id": 8, "method": "\xff"}')
    assert reply(8)["error"]["code"] == -32700
    rx(b"[" * 100000)
    assert sent[-1]["error"]["code"] == -32700
    rx({"jsonrpc": "2.0", "id": 9, "method": "shutdown"})
    assert reply(9)["result"] is None
    rx(
        {
            "jsonrpc": "2.0",
            "id": 10,
            "method": "workspace/executeCommand",
            "params": {"command": "tactful.status"},
        }
    )
    assert reply(10)["error"]["code"] == -32600
    assert not any("traceback" in json.dumps(m) for m in sent)


async def test_handler_futures_are_not_kept() -> None:
    """pygls keeps the future of each generator handler run for a notification (its built-in
    didOpen/didClose) forever; the protocol drops them."""
    import asyncio

    from tactful.lsp.server import create_server

    server = create_server()
    proto = server.protocol

    class W:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    proto.set_writer(W())
    init = {"processId": None, "rootUri": None, "capabilities": {}}
    proto.receive_body(
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}).encode()
    )
    for i in range(200):
        td = {"uri": f"file:///t/{i}.py", "languageId": "python", "version": 1, "text": "x\n"}
        msg = {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": td}}
        proto.receive_body(json.dumps(msg).encode())
        close = {"textDocument": {"uri": td["uri"]}}
        msg = {"jsonrpc": "2.0", "method": "textDocument/didClose", "params": close}
        proto.receive_body(json.dumps(msg).encode())
    await asyncio.sleep(0.5)
    assert len(proto._request_futures) < 5
