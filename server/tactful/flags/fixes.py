"""Quick fixes for flags: the replacement line, kept only when the file still parses.

A flag's quick fix replaces the flagged line with the model's alternative. The replacement keeps
the written line's indentation (the exact characters, tabs included), differs from the line, is not
a comment in place of code, and leaves the file with no more tree-sitter ERROR or MISSING nodes
than it had; a line inside one of them (where tree-sitter reads nothing) gets a fix only when it
removes one. Python that compiled must still compile (tree-sitter accepts some indentation errors);
in a Python file that does not (Python 2, a TabError), the top-level statement around the line
must, if it did. Otherwise the flag has no quick fix (it is still shown, with the alternative in
its message). Plain functions over text; the LSP layer checks again against the document as it is
when the action is asked for, if it was edited since.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

from tactful.flags.features import rule_kind

#: Longest replacement shown in full in a code action's title.
TITLE_CHARS = 48
#: Brackets compared for languages without a grammar.
_BRACKETS = "()[]{}"


def replacement_line(line: str, suggestion: str) -> str:
    """``suggestion``'s content under ``line``'s own indentation."""
    indent = line[: len(line) - len(line.lstrip())]
    return indent + suggestion.strip()


def error_nodes(tree: Any) -> list[tuple[int, int]]:
    """(first row, last row) of each ERROR and MISSING node of a tree-sitter tree (descends
    only where errors are)."""
    out = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            out.append((node.start_point[0], node.end_point[0]))
        if node.has_error:
            stack.extend(node.children)
    return out


def syntax_errors(tree: Any) -> int:
    """ERROR and MISSING nodes in a tree-sitter tree."""
    return len(error_nodes(tree))


#: Lines in column 0 that go on the statement above them (Python).
_GOES_ON = re.compile(r"(else|elif|except|finally)\b|[)\]}#]")


def top_level_chunk(lines: Sequence[str], index: int) -> tuple[int, int]:
    """(start, end) of the top-level statement around line ``index``: from the nearest line at
    or above it that starts one in column 0 (not blank, not a comment, not ``else:`` or a closing
    bracket) to the next such line."""

    def top(i: int) -> bool:
        s = lines[i]
        return bool(s) and not s[0].isspace() and not _GOES_ON.match(s)

    start = index
    while start > 0 and not top(start):
        start -= 1
    end = index + 1
    while end < len(lines) and not top(end):
        end += 1
    return start, end


def python_compiles(text: str) -> bool:
    """Whether Python compiles ``text`` (nothing is run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(text, "<flag fix>", "exec", dont_inherit=True)
            return True
        except (SyntaxError, ValueError):
            return False


def _is_comment_at(tree: Any, row: int, col: int) -> bool:
    """Whether the node at (``row``, byte column ``col``) of a tree-sitter tree is a comment."""
    node = tree.root_node.descendant_for_point_range((row, col), (row, col))
    return node is not None and "comment" in node.type


def _brackets(s: str) -> list[int]:
    return [s.count(c) for c in _BRACKETS]


class FixChecker:
    """Checks replacements of single lines of one document (parsed once, here)."""

    def __init__(self, lines: Sequence[str], language_id: str) -> None:
        from tactful import syntax

        self.lines = list(lines)
        self.language_id = language_id
        self._parser = syntax.parser_for(language_id)
        #: Rows of the ERROR and MISSING nodes of the document as it is (none without a grammar).
        self._error_rows: list[tuple[int, int]] = []
        if self._parser is not None:
            self._error_rows = error_nodes(self._parser.parse(self._encode(self.lines)))
        #: ERROR and MISSING nodes of the document as it is (0 without a grammar).
        self.errors = len(self._error_rows)
        #: Python that compiles now must compile after the fix.
        self._compiles = language_id == "python" and python_compiles("\n".join(self.lines))
        #: Answers of :meth:`why_not` by (line, suggestion): each is parsed and compiled once.
        self._answers: dict[tuple[int, str], str | None] = {}

    @staticmethod
    def _encode(lines: Sequence[str]) -> bytes:
        return "\n".join(lines).encode("utf-8", "surrogatepass")

    def why_not(self, index: int, suggestion: str) -> str | None:
        """Why replacing line ``index`` by ``suggestion`` is no quick fix (None: it is one)."""
        key = (index, suggestion)
        if key not in self._answers:
            self._answers[key] = self._why_not(index, suggestion)
        return self._answers[key]

    def _why_not(self, index: int, suggestion: str) -> str | None:
        line = self.lines[index]
        new = replacement_line(line, suggestion)
        if not suggestion.strip():
            return "empty replacement"
        if " ".join(new.split()) == " ".join(line.split()):
            return "the replacement is the line itself (whitespace aside)"
        if self._parser is None:
            if rule_kind(new) == "comment" and rule_kind(line) != "comment":
                return "the replacement is a comment (it would delete the line's code)"
            if _brackets(new) != _brackets(line):
                return "changes the brackets (no grammar to check it)"
            return None
        edited = list(self.lines)
        edited[index] = new
        tree = self._parser.parse(self._encode(edited))
        if _is_comment_at(tree, index, len(new[: len(new) - len(new.lstrip())].encode())):
            return "the replacement is a comment (it would delete the line's code)"
        errors = syntax_errors(tree)
        if errors > self.errors:
            return "the file would not parse"
        if errors == self.errors and any(a <= index <= b for a, b in self._error_rows):
            # tree-sitter reads nothing in an error region: a new error there changes no count.
            return "the line is in a part of the file that does not parse"
        if self.language_id == "python" and not self._still_compiles(index, edited):
            return "the file would not compile"
        return None

    def _still_compiles(self, index: int, edited: Sequence[str]) -> bool:
        """Python that compiled must compile after the edit; in a file that does not (Python 2,
        a TabError, a half-typed edit elsewhere), the top-level statement around the line."""
        if self._compiles:
            return python_compiles("\n".join(edited))
        a, b = top_level_chunk(self.lines, index)
        if not python_compiles("\n".join(self.lines[a:b])):
            return True  # nothing to compare with: tree-sitter's check stands alone
        return python_compiles("\n".join(edited[a:b]))

    def fix(self, index: int, suggestion: str) -> str | None:
        """The replacement line for ``index``, or None when it is no quick fix."""
        if self.why_not(index, suggestion) is not None:
            return None
        return replacement_line(self.lines[index], suggestion)


def short_title(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` on one line, whitespace runs collapsed, cut to ``limit`` characters with ``…``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
