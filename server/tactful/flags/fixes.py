"""Quick fixes for flags: the replacement line, kept only when the file still parses.

A flag's quick fix replaces the flagged line with the model's alternative. The replacement keeps
the written line's indentation (the exact characters, tabs included), differs from the line, and
leaves the file with no more tree-sitter ERROR or MISSING nodes than it had (and, for Python,
still compiling when it compiled: tree-sitter accepts some indentation errors). Otherwise the flag
has no quick fix (it is still shown, with the alternative in its message). Plain functions over
text; the LSP layer checks again against the document as it is when the action is asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

#: Longest replacement shown in full in a code action's title.
TITLE_CHARS = 48
#: Brackets compared for languages without a grammar.
_BRACKETS = "()[]{}"


def replacement_line(line: str, suggestion: str) -> str:
    """``suggestion``'s content under ``line``'s own indentation."""
    indent = line[: len(line) - len(line.lstrip())]
    return indent + suggestion.strip()


def syntax_errors(tree: Any) -> int:
    """ERROR and MISSING nodes in a tree-sitter tree (descends only where errors are)."""
    count = 0
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        if node.has_error:
            stack.extend(node.children)
    return count


def python_compiles(text: str) -> bool:
    """Whether Python compiles ``text`` (nothing is run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(text, "<flag fix>", "exec", dont_inherit=True)
            return True
        except (SyntaxError, ValueError):
            return False


def _brackets(s: str) -> list[int]:
    return [s.count(c) for c in _BRACKETS]


class FixChecker:
    """Checks replacements of single lines of one document (parsed once, here)."""

    def __init__(self, lines: Sequence[str], language_id: str) -> None:
        from tactful import syntax

        self.lines = list(lines)
        self.language_id = language_id
        self._parser = syntax.parser_for(language_id)
        #: ERROR and MISSING nodes of the document as it is (0 without a grammar).
        self.errors = 0
        if self._parser is not None:
            self.errors = syntax_errors(self._parser.parse(self._encode(self.lines)))
        #: Python that compiles now must compile after the fix.
        self._compiles = language_id == "python" and python_compiles("\n".join(self.lines))

    @staticmethod
    def _encode(lines: Sequence[str]) -> bytes:
        return "\n".join(lines).encode("utf-8", "surrogatepass")

    def why_not(self, index: int, suggestion: str) -> str | None:
        """Why replacing line ``index`` by ``suggestion`` is no quick fix (None: it is one)."""
        line = self.lines[index]
        new = replacement_line(line, suggestion)
        if not suggestion.strip():
            return "empty replacement"
        if " ".join(new.split()) == " ".join(line.split()):
            return "the replacement is the line itself (whitespace aside)"
        if self._parser is None:
            if _brackets(new) != _brackets(line):
                return "changes the brackets (no grammar to check it)"
            return None
        edited = list(self.lines)
        edited[index] = new
        if syntax_errors(self._parser.parse(self._encode(edited))) > self.errors:
            return "the file would not parse"
        if self._compiles and not python_compiles("\n".join(edited)):
            return "the file would not compile"
        return None

    def fix(self, index: int, suggestion: str) -> str | None:
        """The replacement line for ``index``, or None when it is no quick fix."""
        if self.why_not(index, suggestion) is not None:
            return None
        return replacement_line(self.lines[index], suggestion)


def short_title(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` on one line, whitespace runs collapsed, cut to ``limit`` characters with ``…``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
