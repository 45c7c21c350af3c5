"""The one classification of the cursor position, shared by the completion path and the cascade.

:func:`cursor_class` says what kind of place the cursor is in. The completion path
(``tactful.completion.context``) uses it to choose between a single line and a block and to
keep prose inside comments and strings; the CDHF cascade (``tactful.cascade.features``) uses
it as its ``context_class`` feature, at run time and in logs imported without the text after
the cursor. Both import it from here, so the two cannot drift apart. Plain data in, a string
out; no pygls, no model.
"""

from __future__ import annotations

from typing import Any

from tactful import syntax

#: Every value :func:`cursor_class` returns (the cascade's vocabulary adds "other").
CURSOR_CLASSES: tuple[str, ...] = (
    "comment",
    "string",
    "block_start",
    "empty_line",
    "line_end",
    "mid_line",
)
#: Only this many characters before the cursor (cut at a line start) and after it (cut at a
#: line end) are parsed: enough for any ordinary string or comment, and a bounded cost on
#: large documents.
PARSE_WINDOW = 6000
SUFFIX_WINDOW = 2000
#: Where no line start (or end) falls within those windows (a minified or generated line
#: thousands of characters long), only this many characters on that side are parsed: a 30 KB
#: line of emoji took 110-640 ms a request with the full windows (``tactful bench longline``).
LONG_LINE_WINDOW = 512

#: A line ending with one of these opens a block (``:`` in Python, brackets and arrows
#: elsewhere).
_OPENERS = {"python": (":",), "default": ("{", "(", "[", "=>", "->")}
#: Text after the cursor made only of these (auto-closed brackets and quotes, ``;`` and ``,``)
#: still counts as the line's end.
_CLOSERS = set(")]}>;,\"'`")
_STRING_TYPES = {
    "string",
    "string_content",
    "string_fragment",
    "template_string",
    "raw_string_literal",
    "interpreted_string_literal",
    "char_literal",
    "string_literal",
    "character_literal",
}
_COMMENT_TYPES = {"comment", "line_comment", "block_comment"}
#: The line comment marker of each language with a grammar ("//" for the JavaScript family).
LINE_COMMENT = {"python": "#", "go": "//", "rust": "//", "c": "//", "cpp": "//", "java": "//"}
_QUOTES = set("\"'`")


def cursor_class(prefix: str, suffix: str | None, language_id: str) -> str:
    """The kind of place the cursor is in, one of ``CURSOR_CLASSES``.

    ``prefix`` is the text before the cursor, ``suffix`` the text after it (at least to the
    end of the line), or None when it is unknown (logs imported from other tools, such as
    CUPS, keep only the prefix). The rules, in order, and why:

    1. **"comment" / "string"**: the cursor is inside one, by the tree-sitter grammar of the
       language (prefix and suffix parsed together, so a closed docstring or block comment
       spanning lines is recognised; a string counts only strictly between its quotes). When
       the parse has an error (a string being typed, or a prefix without its suffix), the
       cursor line decides: a line that starts with the line comment marker, or an odd quote
       before the cursor. Where the grammar parses cleanly the line rule is not asked, so
       ``&'a`` in Rust is no string. Languages without a grammar have neither class: their
       comment and string syntax is unknown (``#`` or ``//``, and an apostrophe in prose is
       no quote).
    2. **"mid_line"**: text other than closing brackets, quotes, ``;`` and ``,`` follows on
       the line. Auto-closed brackets (``foo(|)``) are the line's end: completing there is
       completing the line. An unknown suffix counts as nothing after the cursor: exact at
       the document's end, and counting it as text would make every imported position
       mid-line, blank lines included.
    3. **"block_start"**: the line before the cursor ends with a block opener of the language
       (``:`` in Python, ``{ ( [ => ->`` elsewhere), or the line is blank and the last line
       with text ends with one: a block (several lines) fits there.
    4. **"empty_line"**: a blank line elsewhere; **"line_end"**: the end of a line of text.

    These are the completion path's rules (issue 26 merged the cascade's own variant into
    them): they are the ones a user sees act (single line against block, prose kept in
    comments), and the cascade's feature now describes the same decision. The cascade's
    variant parsed the prefix only, so it called the place right after a closed string
    "string", missed multi-line docstrings, and took ``foo(|)`` for mid-line.
    """
    line_start = prefix.rfind("\n") + 1
    line_prefix = prefix[line_start:]
    line_suffix = "" if suffix is None else suffix.split("\n", 1)[0].rstrip("\r")
    lexical = _lexical_class(prefix, suffix, language_id, line_prefix)
    if lexical is not None:
        return lexical
    rest = line_suffix.strip()
    if rest and not all(ch in _CLOSERS for ch in rest):
        return "mid_line"
    openers = _OPENERS.get(language_id, _OPENERS["default"])
    stripped = line_prefix.rstrip()
    if stripped:
        return "block_start" if stripped.endswith(openers) else "line_end"
    if prefix[:line_start].rstrip().endswith(openers):
        return "block_start"
    return "empty_line"


def _lexical_class(
    prefix: str, suffix: str | None, language_id: str, line_prefix: str
) -> str | None:
    """'comment' or 'string' when the cursor is inside one (rule 1), else None."""
    parser = syntax.parser_for(language_id)
    if parser is None:
        return None
    head = prefix_window(prefix).encode("utf-8", "surrogatepass")
    tail = _tail(suffix or "").encode("utf-8", "surrogatepass")
    try:
        tree = parser.parse(head + tail)
    except Exception:  # a grammar that fails on odd input: the line rule decides
        tree = None
    if tree is not None:
        found = _node_class(tree.root_node, len(head))
        if found is not None or not tree.root_node.has_error:
            return found
    return _line_class(line_prefix, language_id)


def prefix_window(prefix: str) -> str:
    """The last PARSE_WINDOW characters of ``prefix``, from a line start (what is parsed); the
    last LONG_LINE_WINDOW when no line starts there."""
    if len(prefix) <= PARSE_WINDOW:
        return prefix
    cut = prefix.find("\n", len(prefix) - PARSE_WINDOW)
    return prefix[cut + 1 :] if cut >= 0 else prefix[-LONG_LINE_WINDOW:]


def _tail(suffix: str) -> str:
    """The first SUFFIX_WINDOW characters of ``suffix``, to a line end; the first
    LONG_LINE_WINDOW when no line ends there."""
    if len(suffix) <= SUFFIX_WINDOW:
        return suffix
    cut = suffix.rfind("\n", 0, SUFFIX_WINDOW)
    return suffix[:cut] if cut >= 0 else suffix[:LONG_LINE_WINDOW]


def _node_class(root: Any, byte: int) -> str | None:
    """'comment' or 'string' when the node before byte offset ``byte`` is inside one."""
    node = root.descendant_for_byte_range(max(0, byte - 1), max(0, byte - 1))
    while node is not None:
        if node.type in _COMMENT_TYPES:
            # The cursor right after a line comment's last character is still in it.
            return "comment"
        if node.type in _STRING_TYPES and node.start_byte < byte < node.end_byte:
            return "string"
        node = node.parent
    return None


def _line_class(line_prefix: str, language_id: str) -> str | None:
    """Rule 1 from the cursor line alone: a line comment, or an open quote before the cursor."""
    marker = LINE_COMMENT.get(language_id, "//")  # the JavaScript family
    if line_prefix.lstrip().startswith(marker):
        return "comment"
    open_q: str | None = None
    i = 0
    while i < len(line_prefix):
        ch = line_prefix[i]
        if ch == "\\":
            i += 2
            continue
        if open_q is None and ch in _QUOTES:
            open_q = ch
        elif ch == open_q:
            open_q = None
        i += 1
    return "string" if open_q is not None else None
