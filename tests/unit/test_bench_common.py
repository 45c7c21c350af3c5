"""What the benchmarks share (tools/bench/common.py) and the small LSP client's message helpers
(tools/lspclient.py): the typed stretch, the key-by-key typing (against a recording client: no
server), the percentile figures and the settings. No model, no server."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from lsprotocol import types

from tactful.tools import lspclient
from tactful.tools.bench.common import (
    completion_only,
    latency_figures,
    median_ms,
    ms,
    pick_stretch,
    type_keys,
)
from tactful.tools.bench.latency import pick_sessions

BODY = "\n".join(f"x{i} = {i}" for i in range(60)) + (
    "\n\n\nclass Box:\n    def __init__(self, items):\n"
    "        self.items = list(items)\n        # a comment\n        self.size = len(self.items)\n"
)


def test_pick_stretch_types_body_lines_and_keeps_the_rest() -> None:
    got = pick_stretch(BODY, 1, random.Random(1))
    assert got is not None
    before, typed, after = got
    assert before + typed + after == BODY
    assert typed in ("        self.items = list(items)", "        self.size = len(self.items)")
    assert before.endswith("\n") and after.startswith("\n")
    assert pick_stretch("x = 1\n" * 10, 1, random.Random(1)) is None  # nothing from line 61 on


def test_pick_sessions_skips_files_without_a_stretch(tmp_path: Path) -> None:
    good, short = tmp_path / "good.py", tmp_path / "short.py"
    good.write_text(BODY, encoding="utf-8")
    short.write_text("x = 1\n", encoding="utf-8")
    (sess,) = pick_sessions([short, good], 1, seed=3)
    assert sess.path == str(good) and sess.before + sess.typed + sess.after == BODY


class _Protocol:
    def __init__(self) -> None:
        self._request_futures: dict[int, asyncio.Future[Any]] = {}
        self.cancelled: list[int] = []

    def notify(self, method: str, params: types.CancelParams) -> None:
        assert method == types.CANCEL_REQUEST
        self.cancelled.append(int(params.id))


class _RecordingClient:
    """Records the edits sent; requests are futures that the test answers (or not)."""

    def __init__(self) -> None:
        self.protocol = _Protocol()
        self.changes: list[tuple[int, int, int, str]] = []

    def text_document_did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        (change,) = params.content_changes
        assert isinstance(change, types.TextDocumentContentChangePartial)
        start = change.range.start
        assert change.range.end == start
        self.changes.append(
            (params.text_document.version, start.line, start.character, change.text)
        )


async def test_type_keys_sends_each_key_and_cancels_the_unanswered_request() -> None:
    client = _RecordingClient()
    asked: list[tuple[int, int]] = []

    async def ask(line: int, char: int) -> None:
        # The request for key 2 (the "é") is never answered until the next key cancels it.
        asked.append((line, char))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.protocol._request_futures[len(asked)] = fut
        if len(asked) != 2:
            fut.set_result(None)
        else:
            for _ in range(100):  # bounded: a missing cancel fails the test, not hangs it
                if client.protocol.cancelled:
                    break
                await asyncio.sleep(0)
            fut.cancel()

    await type_keys(client, "file:///x.py", "aé\n😀b", 4, 0, random.Random(1), ask)
    assert [c[0] for c in client.changes] == [2, 3, 4, 5, 6]  # opened at version 1
    # positions in UTF-16 code units: the emoji counts 2, a newline moves to the next line
    assert [c[1:3] for c in client.changes] == [(4, 0), (4, 1), (4, 2), (5, 0), (5, 2)]
    assert asked == [(4, 1), (4, 2), (5, 0), (5, 2), (5, 3)]
    assert client.protocol.cancelled == [2]


def test_latency_figures_round_and_allow_no_sample() -> None:
    xs = [1.04, 2.0, 3.0, 100.06]
    assert latency_figures(xs) == {"p50_ms": 2.5, "p95_ms": 100.1}
    assert latency_figures([]) == {"p50_ms": None, "p95_ms": None}
    assert ms(xs, 50) == 2.0 and median_ms([]) is None


def test_completion_only_turns_the_rest_off() -> None:
    s = completion_only({"debounceMs": 0}, cacheDir="/tmp/c")
    assert s["completion"] == {"debounceMs": 0} and s["cacheDir"] == "/tmp/c"
    assert s["flags"] == s["cdhf"] == s["feedback"] == {"enable": False}


def test_first_item_and_its_text() -> None:
    item = types.InlineCompletionItem(insert_text="abc")
    snippet = types.InlineCompletionItem(insert_text=types.StringValue(value="x$0"))
    assert lspclient.first_item(types.InlineCompletionList(items=[item])) is item
    assert lspclient.first_item([snippet, item]) is snippet
    assert lspclient.first_item(None) is None and lspclient.first_item([]) is None
    assert lspclient.item_text(item) == "abc" and lspclient.item_text(snippet) == "x$0"


def test_initialize_params_name_the_workspace_folder(tmp_path: Path) -> None:
    params = lspclient._initialize_params(lspclient._capabilities(False), {"a": 1}, tmp_path)
    assert params.root_uri == tmp_path.resolve().as_uri()
    assert params.workspace_folders == [
        types.WorkspaceFolder(uri=tmp_path.resolve().as_uri(), name=tmp_path.name)
    ]
    assert params.initialization_options == {"a": 1}
    bare = lspclient._initialize_params(lspclient._capabilities(True), None, None)
    assert bare.root_uri is None and bare.workspace_folders is None
    assert bare.capabilities.text_document is not None
    assert bare.capabilities.text_document.diagnostic is not None
