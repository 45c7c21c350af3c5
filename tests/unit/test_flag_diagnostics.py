"""Line flags as LSP objects (tactful.lsp.flag_diagnostics): plain functions, no server."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types

from tactful.documents import Document
from tactful.flags.result import Flag
from tactful.lsp import flag_diagnostics as fd
from tactful.lsp import protocol

URI = "file:///t/a.py"


def flag(line: int, text: str, fix: str | None = None) -> Flag:
    return Flag(line, 3.5, text, "b = a - 1", 4, len(text), 0.75, fix)


def test_follow_lines_moves_a_flag_with_its_line_and_drops_an_edited_one() -> None:
    doc = Document(URI, "# new\n# lines\na = 1\nb = a + 1\nc = 2\n", "python")
    moved = fd.follow_lines([flag(1, "b = a + 1"), flag(2, "c = 3")], doc)
    assert [(f.line, f.text) for f in moved] == [(3, "b = a + 1")]
    assert moved[0].score == 3.5 and moved[0].probability == 0.75


def test_a_flag_does_not_follow_its_line_further_than_the_window() -> None:
    text = "\n".join(["x"] * (fd.REMAP_WINDOW + 1) + ["b = a + 1"]) + "\n"
    doc = Document(URI, text, "python")
    assert fd.follow_lines([flag(0, "b = a + 1")], doc) == []


def test_diagnostic_range_in_utf16_and_data() -> None:
    doc = Document(URI, "s = '😀'\nb = a + 1\n", "python")
    [d] = fd.to_diagnostics(doc, [Flag(0, 2.0, "s = '😀'", "x", 4, 7, 0.5)], "warning")
    assert d.range == types.Range(types.Position(0, 4), types.Position(0, 8))
    assert d.severity == types.DiagnosticSeverity.Warning
    assert d.source == protocol.DIAGNOSTIC_SOURCE and d.code == protocol.DIAGNOSTIC_CODE
    assert fd.is_ours(d)
    assert d.data == {"score": 2.0, "probability": 0.5, "suggestion": "x", "fix": None, "line": 1}
    [d] = fd.to_diagnostics(doc, [flag(1, "b = a + 1")], "no such severity")
    assert d.severity == types.DiagnosticSeverity.Information


def test_quick_fixes_only_for_current_flags_whose_fix_still_parses() -> None:
    doc = Document(URI, "a = 1\nb = a + 1\nc = a\n", "python")
    good, bad = flag(1, "b = a + 1", "b = a - 1"), flag(2, "c = a", "c = (a")
    diags = fd.to_diagnostics(doc, [good, bad], "hint")
    [action] = fd.quick_fixes(URI, doc, diags, [good, bad])
    assert action.kind == types.CodeActionKind.QuickFix and action.diagnostics == [diags[0]]
    assert action.edit is not None and action.edit.changes is not None
    [edit] = action.edit.changes[URI]
    assert edit.new_text == "b = a - 1"
    assert edit.range == types.Range(types.Position(1, 0), types.Position(1, 9))
    # The flag is gone (its line was edited): no quick fix from a stale diagnostic.
    assert fd.quick_fixes(URI, doc, diags, []) == []


def test_fixes_of_flags_computed_on_this_very_text_are_not_checked_again(
    monkeypatch: Any,
) -> None:
    """The document is unchanged since its flags (and their fixes) were computed: the code
    action parses nothing on the event loop (a 5,000-line file costs ~0.1 s a parse)."""
    doc = Document(URI, "a = 1\nb = a + 1\n", "python")
    good = flag(1, "b = a + 1", "b = a - 1")
    diags = fd.to_diagnostics(doc, [good], "hint")

    def no_parse(*args: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(fd, "FixChecker", no_parse)
    assert len(fd.quick_fixes(URI, doc, diags, [good], recheck=False)) == 1
    with pytest.raises(AssertionError, match="parsed again"):
        fd.quick_fixes(URI, doc, diags, [good])


def test_code_actions_check_again_unless_every_fix_was_checked_on_this_text(
    monkeypatch: Any,
) -> None:
    """The server's code action (the real server object, not started): no parse when the flags'
    fixes were all checked on the document as it is; a parse when some were checked on older
    text (a long document's earlier flags shown beside new ones) or the document changed."""
    from tactful.lsp.flags import _DocFlags
    from tactful.lsp.server import create_server

    server = create_server()
    service = server.flags
    assert service is not None
    server.documents.open(URI, "a = 1\nb = a + 1\n", "python", 3)
    state = service.docs.setdefault(URI, _DocFlags())
    state.flags, state.version, state.fixes_checked = [flag(1, "b = a + 1", "b = a - 1")], 3, True
    parsed: list[int] = []
    real = fd.FixChecker

    def counted(*args: Any) -> Any:
        parsed.append(1)
        return real(*args)

    monkeypatch.setattr(fd, "FixChecker", counted)
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        range=types.Range(types.Position(1, 0), types.Position(1, 0)),
        context=types.CodeActionContext(diagnostics=[]),
    )
    assert len(service.code_actions(params)) == 1 and parsed == []
    state.fixes_checked = False
    assert len(service.code_actions(params)) == 1 and parsed == [1]
    state.fixes_checked = True
    server.documents.open(URI, "a = 1\nb = a + 1\n", "python", 4)  # a new version
    assert len(service.code_actions(params)) == 1 and parsed == [1, 1]
