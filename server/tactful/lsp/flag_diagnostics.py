"""Line flags as LSP objects: diagnostics, quick fixes, and flags followed to where their line
moved. Plain functions over a :class:`~tactful.documents.Document`, no server:
:mod:`tactful.lsp.flags` decides when, these say what.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lsprotocol import types

from tactful.flags.fixes import FixChecker, short_title
from tactful.flags.result import Flag
from tactful.lsp import protocol

if TYPE_CHECKING:
    from tactful.documents import Document

SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}
#: How far (lines) a flag follows its line when lines are inserted or deleted above it.
REMAP_WINDOW = 40


def document_lines(doc: Document) -> list[str]:
    """The document's lines, without their line endings."""
    return [doc.line_text(i) for i in range(doc.line_count)]


def follow_lines(flags: Iterable[Flag], doc: Document) -> list[Flag]:
    """``flags`` of an older version of ``doc``, each moved to the nearest line (within
    :data:`REMAP_WINDOW`) that still has its text; dropped when there is none (it was edited)."""
    out = []
    for f in flags:
        for d in sorted(range(-REMAP_WINDOW, REMAP_WINDOW + 1), key=abs):
            j = f.line + d
            if 0 <= j < doc.line_count and doc.line_text(j) == f.text:
                out.append(dataclasses.replace(f, line=j))
                break
    return out


def to_diagnostic(doc: Document, f: Flag, severity: types.DiagnosticSeverity) -> types.Diagnostic:
    """One flag as a diagnostic over the columns its suggestion replaces; ``data`` carries the
    score, probability, suggestion and quick fix."""
    base = doc.offset_at(f.line, 0)
    sl, sc = doc.position_at(base + f.start_col)
    el, ec = doc.position_at(base + f.end_col)
    return types.Diagnostic(
        range=types.Range(types.Position(sl, sc), types.Position(el, ec)),
        message=f.message,
        severity=severity,
        code=protocol.DIAGNOSTIC_CODE,
        source=protocol.DIAGNOSTIC_SOURCE,
        data={
            "score": round(f.score, 4),
            "probability": round(f.probability, 4),
            "suggestion": f.suggestion,
            "fix": f.fix,
            "line": f.line + 1,
        },
    )


def to_diagnostics(doc: Document, flags: Iterable[Flag], severity: str) -> list[types.Diagnostic]:
    """The flags as diagnostics of the configured ``flags.severity`` (information if unknown)."""
    level = SEVERITY.get(severity, types.DiagnosticSeverity.Information)
    return [to_diagnostic(doc, f, level) for f in flags]


def is_ours(d: types.Diagnostic) -> bool:
    """Whether a diagnostic the client sent back is one of tactful's flags."""
    return d.source == protocol.DIAGNOSTIC_SOURCE and d.code == protocol.DIAGNOSTIC_CODE


def quick_fix(uri: str, doc: Document, d: types.Diagnostic, fix: str) -> types.CodeAction:
    """Replace the whole flagged line by ``fix`` (which carries the line's own indentation)."""
    line = d.range.start.line
    end = doc.position_at(doc.offset_at(line, 0) + len(doc.line_text(line)))
    rng = types.Range(types.Position(line, 0), types.Position(*end))
    return types.CodeAction(
        title=f"{protocol.CODE_ACTION_TITLE}: {short_title(fix)}",
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[d],
        is_preferred=False,
        edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=rng, new_text=fix)]}),
    )


def quick_fixes(
    uri: str,
    doc: Document,
    wanted: Iterable[types.Diagnostic],
    current: Iterable[Flag],
    recheck: bool = True,
) -> list[types.CodeAction]:
    """Quick fixes for the ``wanted`` diagnostics whose flag is still ``current`` (its line
    unedited) and whose fix still leaves the document parsing as it is now (``recheck``: the
    document changed since the flags were computed; otherwise their fixes were checked on this
    very text, and a long document is not parsed again on the event loop)."""
    fixes = {(f.line, f.fix) for f in current if f.fix is not None}
    checker: FixChecker | None = None
    actions = []
    for d in wanted:
        data = d.data if isinstance(d.data, dict) else {}
        fix, line = data.get("fix"), d.range.start.line
        if not isinstance(fix, str) or (line, fix) not in fixes:
            continue  # no quick fix, or the flag is gone (its line was edited)
        if recheck:
            checker = checker or FixChecker(document_lines(doc), doc.language_id)
            if checker.fix(line, fix) != fix:
                continue
        actions.append(quick_fix(uri, doc, d, fix))
    return actions
