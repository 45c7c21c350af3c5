"""The live parse of open documents is bounded (issue 28): tree-sitter holds the GIL whichever
thread runs it, so a long line is cut for the parse, and a big document the index does not
hold yet is parsed by the index's thread, not at its first request on the event loop."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from tactful.workspace import files as wf
from tactful.workspace import service as ws
from tactful.workspace.index import LONG_LINE_CHARS, LONG_LINE_KEEP, cut_long_lines, extract
from tactful.workspace.select import COMMENTS
from tactful.workspace.service import LIVE_PARSE_CHARS, Options, WorkspaceService

HELPER = "def shared_helper_name(x):\n    return x\n"
USER = "from a import shared_helper_name\n\n\ndef g():\n    "
MINIFIED = "var a=function(b,c){return b+c};" * 1000  # one 32 KB line


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, text) of every text the service gives tree-sitter."""
    seen: list[tuple[str, str]] = []
    real = ws.extract

    def spy(text: str, language: str) -> Any:
        seen.append((threading.current_thread().name, text))
        return real(text, language)

    monkeypatch.setattr(ws, "extract", spy)
    return seen


def open_service(tmp_path: Path, docs: dict[Path, str]) -> tuple[WorkspaceService, dict]:
    """A service without a workspace folder and with ``docs`` open (parsed by its thread)."""
    live = {wf.path_to_uri(str(p)): (t, "python") for p, t in docs.items()}
    svc = WorkspaceService(None, lambda: Options(), lambda uri: live.get(uri))
    svc.start([])
    for p, t in docs.items():
        svc.opened(wf.path_to_uri(str(p)), t, "python")
    assert svc.wait_idle()
    return svc, live


def test_cut_long_lines_keeps_line_numbers_ends_and_normal_text() -> None:
    normal = HELPER * 50 + "x = '" + "y" * (LONG_LINE_CHARS - 10) + "'\n"
    assert cut_long_lines(normal) == (normal, 0)
    long = "<" + "z" * LONG_LINE_CHARS + ">"
    kept = "<" + "z" * (2 * LONG_LINE_KEEP - 2) + ">"
    text = f"a = 1\n{long}\r\nb = 2\r{long}\rc = 3\n{long}"
    out, n = cut_long_lines(text)
    assert n == 3
    assert out == f"a = 1\n{kept}\r\nb = 2\r{kept}\rc = 3\n{kept}"


def test_a_string_opened_on_a_long_line_still_holds_its_lines() -> None:
    data = "A" * 3 * LONG_LINE_CHARS
    text = f'DATA = """{data}\n{data}\n{data}"""\n\n\ndef after_the_data(x):\n    return x\n'
    out, n = cut_long_lines(text)
    assert n == 3
    assert [(d.name, d.line) for d in extract(out, "python")[0]] == [
        ("DATA", 0),
        ("after_the_data", 5),
    ]


def test_a_long_line_is_cut_for_the_parse_and_told_once(
    tmp_path: Path, parsed: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    a = tmp_path / "a.py"
    text = f"import os\nDATA = '{MINIFIED}'\n\n\ndef after_the_data(x):\n    return x\n"
    with caplog.at_level(logging.INFO, logger="tactful.workspace.service"):
        svc, live = open_service(tmp_path, {a: text})
        uri = wf.path_to_uri(str(a))
        live[uri] = (text + "# edit\n", "python")
        svc.changed(uri)
        assert svc.wait_idle()
    assert parsed, "the open document was parsed"
    assert all(max(map(len, t.split("\n"))) <= LONG_LINE_CHARS for _, t in parsed)
    entry = svc.index.files[str(a.resolve())]
    assert [(d.name, d.line) for d in entry.defs] == [("DATA", 1), ("after_the_data", 4)]
    assert entry.imports[0].module == "os"
    told = [r for r in caplog.records if "cut for its parse" in r.getMessage()]
    assert len(told) == 1
    svc.stop()


def test_a_long_line_at_the_first_request_costs_no_parse_of_it(
    tmp_path: Path, parsed: list[tuple[str, str]]
) -> None:
    a = tmp_path / "a.py"
    a.write_text(HELPER)
    svc, _ = open_service(tmp_path, {a: HELPER})
    doc = tmp_path / "long.py"
    text = "from a import shared_helper_name\n" + MINIFIED
    pre = svc.context(wf.path_to_uri(str(doc)), text, len(text), "python", 0, COMMENTS)
    assert "# def shared_helper_name(x):" in pre  # the imports above the line still count
    mine = [t for name, t in parsed if name == threading.current_thread().name]
    assert mine == ["from a import shared_helper_name\n" + MINIFIED[:80] + MINIFIED[-80:]]
    svc.stop()


def test_a_big_document_is_parsed_by_the_index_thread_not_at_its_first_request(
    tmp_path: Path, parsed: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    a = tmp_path / "a.py"
    svc, live = open_service(tmp_path, {a: HELPER})
    big = tmp_path / "big.py"
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(LIVE_PARSE_CHARS // 30))
    text = USER.replace("def g", body + "def g")
    assert len(text) > LIVE_PARSE_CHARS
    uri = wf.path_to_uri(str(big))
    me = threading.current_thread().name
    with caplog.at_level(logging.INFO, logger="tactful.workspace.service"):
        first = svc.context(uri, text, len(text), "python", 0, COMMENTS)
        assert first == ""  # no repository context for this request
        assert not [t for name, t in parsed if name == me]
        live[uri] = (text, "python")
        svc.opened(uri, text, "python")
        assert svc.wait_idle()
        assert len(svc.index.files[str(big.resolve())].defs) > 100
        later = svc.context(uri, text, len(text), "python", 0, COMMENTS)
    assert "# def shared_helper_name(x):" in later
    assert not [t for name, t in parsed if name == me]
    told = [r for r in caplog.records if "parsed by the index's thread" in r.getMessage()]
    assert len(told) == 1
    svc.stop()


def test_a_normal_document_is_parsed_at_its_first_request_as_before(
    tmp_path: Path, parsed: list[tuple[str, str]]
) -> None:
    a = tmp_path / "a.py"
    svc, _ = open_service(tmp_path, {a: HELPER})
    b = tmp_path / "b.py"
    uri = wf.path_to_uri(str(b))
    first = svc.context(uri, USER, len(USER), "python", 0, COMMENTS)
    assert parsed[-1] == (threading.current_thread().name, USER)
    assert "# From a.py:\n# def shared_helper_name(x):" in first
    # the next keystrokes on the line reuse the same block (the KV cache's prefix)
    typed = USER + "return shared"
    assert svc.context(uri, typed, len(typed), "python", 0, COMMENTS) == first
    svc.stop()
