"""Turn raw model output into a suggestion worth showing, or nothing.

Each filter has the same shape, ``(text, ctx) -> text``, and ``FILTERS`` lists them in the
order they run. A filter may only shorten the text (or drop it: ""). ``postprocess`` returns
None when nothing worth showing is left: never an empty or whitespace-only suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tactful.completion.context import CompletionContext

Filter = Callable[[str, CompletionContext], str]

# Lines that mean an instruction-tuned model has drifted from code into chat or prose.
_DRIFT = re.compile(
    r"^\s*(?:#+\s*|//\s*|/\*\s*)?(?:example usage|usage example|example:|explanation|output:|"
    r"here is|here's|this (?:code|function|program|script|will)|in this example|note:|"
    r"you can|the (?:above|following|function|code)|test the function|let me|i hope|"
    r"sure[,!]|certainly)",
    re.IGNORECASE,
)
_FENCE = "```"
_CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<fim_", "<|fim_", "<file_sep>")


def cut_chat_tokens(text: str, ctx: CompletionContext) -> str:
    """Cut at any leaked special token."""
    for tok in _CHAT_TOKENS:
        i = text.find(tok)
        if i >= 0:
            text = text[:i]
    return text


def cut_code_fence(text: str, ctx: CompletionContext) -> str:
    """Cut at a Markdown code fence (the model starting to explain its code)."""
    i = text.find(_FENCE)
    return text if i < 0 else text[:i]


def cut_prose_drift(text: str, ctx: CompletionContext) -> str:
    """Cut at the first line that reads like chat or prose rather than code."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if i == 0 and ctx.line_prefix.strip():
            continue  # the rest of an existing line is judged by the other filters
        if _DRIFT.match(line) or (
            ctx.context_class not in ("comment", "string") and _is_prose(line)
        ):
            return "\n".join(lines[:i])
    return text


def _is_prose(line: str) -> bool:
    words = line.strip().split()
    if len(words) < 6:
        return False
    code_chars = sum(line.count(c) for c in "()[]{}=:;.,<>+-*/%\"'_#")
    return code_chars <= 1 and words[0][:1].isupper() and line.rstrip().endswith((".", ":", "!"))


def cut_block_end(text: str, ctx: CompletionContext) -> str:
    """Multi-line: stop where a line leaves the cursor's block (dedent, or an unmatched closer)."""
    if "\n" not in text:
        return text
    lines = text.split("\n")
    keep = [lines[0]]
    indent = len(ctx.block_indent.expandtabs(4))
    depth = _bracket_delta(ctx.line_prefix + lines[0])
    blank_run = 0
    for line in lines[1:]:
        if not line.strip():
            blank_run += 1
            if blank_run >= 2:
                break
            keep.append(line)
            continue
        line_indent = len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())
        if line_indent < indent:
            # A closing brace at the outer level ends the block; include it for brace languages
            # only when it closes a bracket opened inside the suggestion.
            if depth > 0 and line.strip()[0] in ")]}":
                keep.append(line)
            break
        if blank_run and line_indent == 0 and indent > 0:
            break
        blank_run = 0
        depth += _bracket_delta(line)
        keep.append(line)
        if depth < 0:
            break
    return "\n".join(keep).rstrip()


def _bracket_delta(line: str) -> int:
    return sum(line.count(c) for c in "([{") - sum(line.count(c) for c in ")]}")


def cut_repetition(text: str, ctx: CompletionContext) -> str:
    """Cut where the model starts repeating itself (a line repeated, or the line before the cursor)."""
    lines = text.split("\n")
    prev_line = (
        ctx.prefix[: len(ctx.prefix) - len(ctx.line_prefix)].rstrip("\n").rsplit("\n", 1)[-1]
    )
    seen: set[str] = set()
    for i, line in enumerate(lines):
        key = line.strip()
        if not key:
            continue
        if key in seen or (i > 0 and key == prev_line.strip() and len(key) > 8):
            return "\n".join(lines[:i]).rstrip()
        if len(key) > 3:
            seen.add(key)
    # A single line that repeats a short pattern many times ("a a a a a").
    for m in re.finditer(r"(.{2,20}?)\1{3,}", text):
        if any(ch.isalnum() for ch in m.group(1)):
            return text[: m.start() + len(m.group(1))]
    return text


def cut_suffix_overlap(text: str, ctx: CompletionContext) -> str:
    """Drop text that repeats what already follows the cursor."""
    rest = ctx.line_suffix.strip()
    if rest and "\n" not in text.strip():
        # "foo(" + model "a, b)" while ")" follows: drop the closer that is already there.
        stripped = text.rstrip()
        for k in range(len(rest), 0, -1):
            if stripped.endswith(rest[:k]):
                text = stripped[: len(stripped) - k]
                break
    following = [ln.strip() for ln in ctx.suffix.split("\n")[1:4] if ln.strip()]
    if following:
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if i > 0 and line.strip() and line.strip() == following[0]:
                return "\n".join(lines[:i]).rstrip()
    return text


def trim_trailing_space(text: str, ctx: CompletionContext) -> str:
    """No trailing whitespace on any line, none at the end."""
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()


def single_line_only(text: str, ctx: CompletionContext) -> str:
    """Single-line contexts get the rest of the current line only."""
    return text if ctx.multiline else text.split("\n", 1)[0]


FILTERS: list[Filter] = [
    cut_chat_tokens,
    cut_code_fence,
    single_line_only,
    cut_prose_drift,
    cut_block_end,
    cut_repetition,
    cut_suffix_overlap,
    trim_trailing_space,
]


def postprocess(raw: str, ctx: CompletionContext) -> str | None:
    """Run every filter; None when nothing worth showing is left."""
    text = raw
    for f in FILTERS:
        text = f(text, ctx)
        if not text.strip():
            return None
    if ctx.line_prefix.strip() == "" and text.startswith("\n"):
        return None
    return text
