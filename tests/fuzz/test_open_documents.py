"""The bound on open documents (``openDocumentsMb``) over the real server's stdio: the least
recently used documents go dormant, keep taking edits, and wake when used; one message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tactful.tools.bench.peer import Peer, frame, start


def _note(peer: Peer, method: str, params: dict[str, Any]) -> None:
    peer.send(frame(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()))


def _documents(peer: Peer, k: int) -> dict[str, int]:
    r = peer.request(
        f"st{k}", "workspace/executeCommand", {"command": "tactful.status", "arguments": []}
    )
    assert r is not None and "result" in r, r
    return dict(r["result"]["documents"])


def test_open_documents_over_the_bound_go_dormant_and_still_take_edits(tmp_path: Path) -> None:
    peer = start(tmp_path / "data", tmp_path / "server.log", with_model=False)
    try:
        _note(
            peer,
            "workspace/didChangeConfiguration",
            {"settings": {"tactful": {"openDocumentsMb": 1}}},
        )
        text = "x = 1\n" * 70_000  # 420 KB: three of them are over 1 MB
        for name in "abc":
            doc = {"uri": f"file:///bound/{name}.py", "languageId": "python", "version": 1}
            _note(peer, "textDocument/didOpen", {"textDocument": {**doc, "text": text}})
        assert _documents(peer, 1) == {"open": 3, "dormant": 1}  # a.py
        # an incremental edit of the dormant document is applied and wakes it; b.py sleeps
        edit = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}
        _note(
            peer,
            "textDocument/didChange",
            {
                "textDocument": {"uri": "file:///bound/a.py", "version": 2},
                "contentChanges": [{"range": edit, "text": "y = 2"}],
            },
        )
        assert _documents(peer, 2) == {"open": 3, "dormant": 1}
        _note(peer, "textDocument/didClose", {"textDocument": {"uri": "file:///bound/b.py"}})
        assert _documents(peer, 3) == {"open": 2, "dormant": 0}
        with peer.cv:
            shown = [
                n["params"]["message"]
                for n in peer.notifications
                if n.get("method") == "window/showMessage"
            ]
        assert len([m for m in shown if "openDocumentsMb" in m]) == 1, shown
        assert peer.alive()
    finally:
        peer.close()
    log = (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "is not open" not in log and "Traceback" not in log  # the edit was taken
