"""Grammar fuzzing of the JSON-RPC stream and of the LSP messages tactful handles, against the
real server over stdio (Hypothesis; bounded: a few hundred examples, well under a minute).

Every correctly framed JSON object with a method and a valid id must be answered, the stream
must stay in sync (a valid request afterwards is answered correctly), the process must live."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tests.fuzz.wire import StdioServer, frame, initialize

_ids = itertools.count(10_000)

URIS = st.sampled_from(
    ["file:///f/a.py", "file:///f/b.js", "untitled:1", "file:///f/\ud800.py", "file:///f/😀.py"]
)
TEXT = st.text(st.characters(blacklist_categories=()), max_size=300) | st.sampled_from(
    ["x = 1\r" * 50, "9" * 30000, "😀" * 2000, "\x00\x01binary\x7f" * 10, ""]
)
INTS = st.integers(min_value=-(2**64), max_value=2**64) | st.integers(0, 50)
JSON = st.recursive(
    st.none() | st.booleans() | INTS | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=8,
)
POS = st.fixed_dictionaries({"line": INTS, "character": INTS})
TD = st.fixed_dictionaries({"uri": URIS})


def _maybe(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return s | JSON  # valid, or anything at all in its place


PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "textDocument/didOpen": st.fixed_dictionaries(
        {
            "textDocument": st.fixed_dictionaries(
                {
                    "uri": URIS,
                    "languageId": st.sampled_from(["python", "c", ""]),
                    "version": _maybe(INTS),
                    "text": _maybe(TEXT),
                }
            )
        }
    ),
    "textDocument/didChange": st.fixed_dictionaries(
        {
            "textDocument": st.fixed_dictionaries({"uri": URIS, "version": _maybe(INTS)}),
            "contentChanges": st.lists(
                st.fixed_dictionaries(
                    {"text": _maybe(TEXT)},
                    optional={"range": _maybe(st.fixed_dictionaries({"start": POS, "end": POS}))},
                ),
                max_size=3,
            ),
        }
    ),
    "textDocument/didClose": st.fixed_dictionaries({"textDocument": _maybe(TD)}),
    "textDocument/didSave": st.fixed_dictionaries(
        {"textDocument": TD}, optional={"text": _maybe(TEXT)}
    ),
    "textDocument/inlineCompletion": st.fixed_dictionaries(
        {
            "textDocument": _maybe(TD),
            "position": _maybe(POS),
            "context": st.fixed_dictionaries({"triggerKind": _maybe(st.sampled_from([1, 2]))}),
        }
    ),
    "textDocument/completion": st.fixed_dictionaries({"textDocument": TD, "position": _maybe(POS)}),
    "textDocument/codeAction": st.fixed_dictionaries(
        {
            "textDocument": TD,
            "range": st.fixed_dictionaries({"start": POS, "end": POS}),
            "context": st.fixed_dictionaries({"diagnostics": st.just([])}),
        }
    ),
    "workspace/executeCommand": st.fixed_dictionaries(
        {
            "command": st.sampled_from(
                [
                    "tactful.toggle",
                    "tactful.status",
                    "tactful.accept",
                    "tactful.reject",
                    "tactful.logLocation",
                    "tactful.replayReport",
                    "nope",
                ]
            )
            | JSON,
            "arguments": st.lists(JSON, max_size=3),
        }
    ),
    "textDocument/didShowCompletion": st.fixed_dictionaries({"item": JSON}),
    "$/cancelRequest": st.fixed_dictionaries({"id": INTS | st.text(max_size=5)}),
    "workspace/didChangeConfiguration": st.fixed_dictionaries(
        {
            "settings": st.fixed_dictionaries(
                {
                    "tactful": st.dictionaries(
                        st.sampled_from(["enable", "completion", "feedback", "model"]),
                        JSON,
                        max_size=2,
                    )
                }
            )
        }
    ),
    "tactful/whatever": JSON,
}
METHODS = sorted(PARAMS)


@st.composite
def lsp_message(draw: st.DrawFn) -> tuple[bytes, Any]:
    method = draw(st.sampled_from(METHODS))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if draw(st.booleans()):
        msg["params"] = draw(PARAMS[method])
    due = None
    if draw(st.booleans()) and not method.startswith("$/"):
        due = next(_ids)
        msg["id"] = due if draw(st.booleans()) else str(due)
        due = msg["id"]
    if draw(st.integers(0, 9)) == 0:  # break the envelope
        key = draw(st.sampled_from(["jsonrpc", "method", "params", "id"]))
        msg[key] = draw(JSON)
        if key == "id":
            v = msg["id"]
            due = (
                v
                if (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)
                else None
            )
    return frame(json.dumps(msg).encode()), due


@st.composite
def raw_junk(draw: st.DrawFn) -> tuple[bytes, Any]:
    body = draw(st.binary(max_size=200))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return body, None
    if kind == 1:
        return frame(body), None
    if kind == 2:
        n = draw(st.sampled_from([10**12, 2**63, 2**64 + 7, 10**40]))
        return b"Content-Length: %d\r\n\r\n" % n + body, None
    if kind == 3:
        return b"Content-Length: %d\r\n" % draw(st.integers(0, 500)) + body, None  # no blank line
    if kind == 4:
        return b"Content-Length: %d\r\n\r\n" % (len(body) + draw(st.integers(1, 100))) + body, None
    return frame(draw(JSON.map(lambda v: json.dumps(v).encode()))), None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    s = StdioServer(tmp_path_factory.mktemp("fuzz"))
    r = s.request(0, "initialize", initialize()["params"], timeout=120)
    assert r is not None and "result" in r
    yield s
    s.close()


# No shrinking: a batch is at most 8 messages (readable as it is), and shrinking a failure that
# waits for a timeout would take minutes.
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
)
@given(st.lists(lsp_message() | raw_junk(), min_size=1, max_size=8))
def test_every_request_is_answered_and_the_stream_stays_in_sync(
    server: StdioServer, batch: list[tuple[bytes, Any]]
) -> None:
    due = [d for _b, d in batch if d is not None]
    server.send(b"".join(b for b, _d in batch))
    sentinel = next(_ids)
    r = server.request(
        sentinel, "workspace/executeCommand", {"command": "tactful.status", "arguments": []}, 30
    )
    assert server.proc.poll() is None, server.stderr()[-3000:]
    assert r is not None and "state" in r["result"], r
    for d in due:
        assert server.msgs.response(d, 30) is not None, f"request {d!r} was not answered"


def test_after_the_barrage_errors_are_short_and_popups_few(server: StdioServer) -> None:
    server.msgs.drain()
    shown = [m for m in server.msgs.seen if m.get("method") == "window/showMessage"]
    assert len(shown) <= 12, [m["params"]["message"][:80] for m in shown]
    errors = [m["error"] for m in server.msgs.seen if "error" in m]
    assert errors and all("traceback" not in json.dumps(e) for e in errors)
    assert all(len(e["message"]) <= 400 for e in errors)
