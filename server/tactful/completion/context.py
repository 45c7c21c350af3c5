"""What the model sees around the cursor, and what kind of completion fits there.

``build_context`` cuts a prefix and suffix within a budget (with a window start that moves in
steps, so successive prompts share a token prefix and the KV cache can be reused; the budget
holds in characters and in UTF-8 bytes, so in tokens too, even on one long line) and decides,
from the cursor's syntactic position (tree-sitter where a grammar exists, else lines and
indentation; ``tactful.cursor``), whether to offer a single line or a block.
"""

from __future__ import annotations

from dataclasses import dataclass

from tactful.cursor import cursor_class

#: Average characters per token used to turn a token budget into a character budget.
CHARS_PER_TOKEN = 3.0
#: The window start moves in steps of this many lines (stable prompts -> KV-cache reuse).
WINDOW_STEP_LINES = 32
#: Inside a line (a line longer than the budget), the window start moves in steps of this many
#: characters.
WINDOW_STEP_CHARS = 64
#: A line longer than the whole budget (minified code, data, a dump) gives the prompt at most
#: this many UTF-8 bytes of itself, before and after the cursor: on such a line a long prompt
#: (up to a token per byte) costs seconds of prefill and buys no better suggestion.
LONG_LINE_BYTES = 256


@dataclass
class CompletionContext:
    """Text around the cursor, cut to budget, and the completion kind that fits."""

    prefix: str
    suffix: str
    #: Current line before / after the cursor.
    line_prefix: str
    line_suffix: str
    language_id: str
    #: Offer a block (several lines) rather than the rest of one line.
    multiline: bool
    #: Where the cursor is (``tactful.cursor.cursor_class``): "block_start", "line_end",
    #: "empty_line", "mid_line", "comment" or "string"
    context_class: str
    #: Indentation that the suggestion's lines must keep (for cutting at the block end).
    block_indent: str
    #: Offset in the document where ``prefix`` starts.
    prefix_start: int
    offset: int
    #: Repository context that starts the prompt (``tactful.workspace``); "" for none.
    preamble: str = ""


def _window_start(text: str, offset: int, budget_chars: int) -> int:
    """Start offset of the prefix window: a line start, moved in steps of WINDOW_STEP_LINES."""
    if offset <= budget_chars:
        return 0
    earliest = offset - budget_chars
    line_no = text.count("\n", 0, earliest) + 1  # first whole line inside the budget
    line_no = -(-line_no // WINDOW_STEP_LINES) * WINDOW_STEP_LINES  # round up to a step
    cursor_line = text.count("\n", 0, offset)
    line_no = min(line_no, cursor_line)
    pos = 0
    for _ in range(line_no):
        nxt = text.find("\n", pos)
        if nxt < 0:
            break
        pos = nxt + 1
    return pos


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _cap_start(text: str, start: int, offset: int, budget: int) -> int:
    """``start`` moved forward so that ``text[start:offset]`` holds at most ``budget`` characters
    and at most ``budget`` UTF-8 bytes, cutting inside a line when it must (in steps of
    WINDOW_STEP_CHARS, so successive prompts still share a prefix).

    The byte bound is what caps the prompt in tokens whatever the text: a byte-level BPE token
    covers at least one byte, so the prompt has at most ``budget`` tokens (digits, CJK and emoji
    take one token per digit or byte or so; code about one per 3-4 characters)."""
    if offset - start > budget:
        start = offset - budget
    if offset - start > budget // 4:  # else even 4-byte characters fit
        enc = text[start:offset].encode("utf-8", "surrogatepass")
        if len(enc) > budget:
            tail = enc[len(enc) - budget :]
            k = 0
            while k < len(tail) and 0x80 <= tail[k] < 0xC0:  # not inside a character
                k += 1
            start = offset - len(tail[k:].decode("utf-8", "surrogatepass"))
    if start > 0 and text[start - 1] != "\n":
        start = min(offset, -(-start // WINDOW_STEP_CHARS) * WINDOW_STEP_CHARS)
    return start


def _cap_end(text: str, offset: int, end: int, budget: int) -> int:
    """``end`` moved back so that ``text[offset:end]`` has at most ``budget`` UTF-8 bytes."""
    end = min(end, offset + max(0, budget))
    enc = text[offset:end].encode("utf-8", "surrogatepass")
    if len(enc) > budget:
        head = enc[: max(0, budget)]
        k = len(head)
        while k > 0 and 0x80 <= head[k - 1] < 0xC0:
            k -= 1
        if k > 0 and head[k - 1] >= 0xC0:  # a lead byte whose character was cut
            k -= 1
        end = offset + len(head[:k].decode("utf-8", "surrogatepass"))
    return end


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def build_context(
    text: str,
    offset: int,
    language_id: str,
    *,
    context_tokens: int = 1500,
    multiline_enabled: bool = True,
    fim: bool = False,
) -> CompletionContext:
    """Cut the context around ``offset`` and decide the completion kind."""
    offset = max(0, min(offset, len(text)))
    budget = int(context_tokens * CHARS_PER_TOKEN)
    prefix_budget = budget * 3 // 4 if fim else budget
    line_start = text.rfind("\n", 0, offset) + 1
    if offset - line_start > prefix_budget:
        prefix_budget = min(prefix_budget, LONG_LINE_BYTES)
    start = _cap_start(text, _window_start(text, offset, prefix_budget), offset, prefix_budget)
    prefix = text[start:offset]
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    line_prefix = text[line_start:offset]
    line_suffix = text[offset:line_end].rstrip("\r")
    suffix_end = min(len(text), offset + max(0, budget - len(prefix)) if fim else offset + 2000)
    if fim:
        rest = budget - _utf8_len(prefix)
        if "\n" not in text[offset : offset + rest]:
            rest = min(rest, LONG_LINE_BYTES)  # inside a long line
        suffix_end = _cap_end(text, offset, suffix_end, rest)
    cut = text.rfind("\n", offset, suffix_end)
    suffix = text[offset : (cut if cut > offset and suffix_end < len(text) else suffix_end)]

    cls = cursor_class(text[:offset], text[offset:], language_id)
    multiline = multiline_enabled and cls in ("block_start", "empty_line")
    indent = _indent_of(line_prefix)
    if cls == "block_start" and line_prefix.strip():
        # Cursor at the end of "def f():" / "if (x) {": the block is indented one level deeper.
        indent = _indent_of(line_prefix) + ("    " if "\t" not in line_prefix else "\t")
    return CompletionContext(
        prefix=prefix,
        suffix=suffix,
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        language_id=language_id,
        multiline=multiline,
        context_class=cls,
        block_indent=indent,
        prefix_start=start,
        offset=offset,
    )
