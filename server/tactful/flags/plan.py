"""Planning a flagging job: which documents are skipped (and why), the scoring windows, which
lines are considered, and how many lines each window may regenerate.

Plain functions over lines; no model. The sizes here bound the model work of any document.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

#: Characters of owned lines per scoring window (about 1,000-1,500 tokens).
WINDOW_CHARS = 4000
WINDOW_MAX_LINES = 160
#: Lines before a window that the model sees as context (scored but owned by the previous window).
CONTEXT_LINES = 24
CONTEXT_CHARS = 1500
#: Longer lines are cut to ``LONG_LINE_KEEP`` characters for the model and never flagged.
MAX_LINE_CHARS = 400
LONG_LINE_KEEP = 120
#: A document may hold at most ``flags.maxLines`` times this many characters: the scoring
#: windows (one model pass each) grow with the characters, not only with the lines.
CHARS_PER_LINE_CAP = 100
#: Regenerate this many more lines than can be flagged, and never more than MAX_REGEN per file.
REGEN_EXTRA = 2
#: Lines of one window regenerated together (one decoding pass per token for all of them).
REGEN_BATCH = 8
MAX_REGEN = 64
NOT_CONSIDERED = ("blank", "comment")
EMPTY = "empty document"


@dataclass(frozen=True)
class RegenOptions:
    """How many lines are regenerated and how: the knobs of training and benchmarks (the editor
    uses the defaults)."""

    #: At most this many regenerations per file.
    max_regen: int = MAX_REGEN
    #: Lines regenerated beyond the number that can be flagged.
    regen_extra: int = REGEN_EXTRA
    #: Regenerate every considered line (naive FLAG, training sets).
    regenerate_all: bool = False
    #: Lines regenerated whatever the first stage says (training data: the injected bug).
    force: Sequence[int] = ()
    #: Start each regeneration at the line's first non-greedy token (same text, less work).
    speculative: bool = True
    #: Lines of one window regenerated together (1: one at a time).
    batch: int = REGEN_BATCH


@dataclass(frozen=True)
class Focus:
    """Where bugs are born: the lines changed in this editing session go first, and lines the
    user just accepted from tactful (unedited since) are not flagged."""

    #: 0-based lines changed in this session: regenerated and flagged ahead of the others.
    changed: frozenset[int] = field(default_factory=frozenset)
    #: 0-based lines never flagged (accepted suggestions not edited since).
    exclude: frozenset[int] = field(default_factory=frozenset)
    #: Flag only the changed lines (``flags.scope: changed``) instead of the whole file.
    changed_only: bool = False

    @classmethod
    def of(
        cls,
        changed: Collection[int] = (),
        exclude: Collection[int] = (),
        changed_only: bool = False,
    ) -> Focus:
        return cls(frozenset(changed), frozenset(exclude), changed_only)


@dataclass
class Window:
    ctx_start: int  # first line the model sees
    start: int  # first owned line
    end: int  # one past the last owned line


def skip_reason(text: str, max_lines: int) -> str | None:
    """Why a text is not flagged at all (None: it is flagged)."""
    if "\x00" in text:
        return "binary content (NUL characters)"
    sample = text[:20000]
    if sample:
        ctrl = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f\v")
        if ctrl / len(sample) > 0.01 or sample.count("\ufffd") / len(sample) > 0.01:
            return "binary content (control characters)"
    n = text.count("\n") + (0 if text.endswith("\n") else 1)  # a final newline ends a line
    if n > max_lines:
        return f"{n} lines is more than flags.maxLines ({max_lines})"
    if len(text) > max_lines * CHARS_PER_LINE_CAP:
        return (
            f"{len(text)} characters is more than flags.maxLines × {CHARS_PER_LINE_CAP}"
            f" ({max_lines * CHARS_PER_LINE_CAP})"
        )
    lines = text.split("\n")
    long_chars = sum(len(ln) for ln in lines if len(ln) > MAX_LINE_CHARS)
    if len(text) > 2000 and long_chars > len(text) / 2:
        return "minified or generated text (most of it is in lines over 400 characters)"
    if not any(ln.strip() for ln in lines):
        return EMPTY
    return None


class NothingToFlag(NamedTuple):
    """Why a document that :func:`skip_reason` lets through has no line to flag."""

    reason: str
    #: The reason comes from the editing session or the settings (nothing changed, a budget
    #: too small), not from the document's content: no news (the LSP layer logs it at INFO).
    routine: bool


def nothing_to_flag(
    lines: Sequence[str],
    kinds: Sequence[str],
    considered: Sequence[int],
    regen: int,
    focus: Focus,
) -> NothingToFlag | None:
    """Why no line of ``lines`` can be flagged (None: some can): every line blank, a comment or
    over-long, no line changed under ``flags.scope: changed``, or a budget that allows no flag
    (``regen``: the lines to regenerate, :func:`regen_count`)."""
    if not considered:
        if focus.changed_only and not focus.changed:
            return NothingToFlag("no line changed in this session (flags.scope: changed)", True)
        long = sum(1 for ln in lines if len(ln) > MAX_LINE_CHARS)
        if long:
            rest = ", the others blank, comments or left out" if long < len(lines) else ""
            return NothingToFlag(
                f"no line can be flagged: {long} of {len(lines)} lines are over"
                f" {MAX_LINE_CHARS} characters (minified or generated?){rest}",
                False,
            )
        return NothingToFlag(
            "no line can be flagged: blank lines, comments, accepted suggestions or (with"
            " flags.scope: changed) unchanged lines only",
            True,
        )
    if regen == 0:
        return NothingToFlag(f"{len(lines)} lines: the budget (flags.budget) allows no flag", True)
    return None


def plan_windows(lines: Sequence[str]) -> list[Window]:
    """Cut ``lines`` into scoring windows of bounded characters, each with its context lines."""
    out: list[Window] = []
    n = len(lines)
    start = 0
    while start < n:
        end, chars = start, 0
        while end < n and (
            end == start or (chars < WINDOW_CHARS and end - start < WINDOW_MAX_LINES)
        ):
            chars += min(len(lines[end]), MAX_LINE_CHARS) + 1
            end += 1
        ctx, cchars = start, 0
        while ctx > 0 and start - ctx < CONTEXT_LINES and cchars < CONTEXT_CHARS:
            ctx -= 1
            cchars += min(len(lines[ctx]), MAX_LINE_CHARS) + 1
        out.append(Window(ctx, start, end))
        start = end
    return out


def considered_lines(lines: Sequence[str], kinds: Sequence[str], focus: Focus) -> list[int]:
    """The lines that can be flagged: not blank, not comments, not over-long, not excluded
    (and, with ``focus.changed_only``, changed)."""
    return [
        i
        for i, k in enumerate(kinds)
        if k not in NOT_CONSIDERED
        and len(lines[i]) <= MAX_LINE_CHARS
        and i not in focus.exclude
        and (not focus.changed_only or i in focus.changed)
    ]


def regen_count(considered: int, max_flags: int, options: RegenOptions) -> int:
    """How many lines of the file are regenerated."""
    if options.regenerate_all:
        return considered
    return min(options.max_regen, considered, max_flags + options.regen_extra if max_flags else 0)


def max_flags(budget: float, lines: int) -> int:
    return math.floor(budget * lines + 1e-9)
