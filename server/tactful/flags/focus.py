"""Where bugs are born: the lines changed in this editing session (or against git's HEAD), and
the lines the user just accepted from tactful (not flagged while unedited).

Plain functions over lines, used by the LSP layer to build a :class:`tactful.flags.plan.Focus`.
"""

from __future__ import annotations

import difflib
import logging
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: A fragment of an accepted suggestion shorter than this (non-space characters) marks no line
#: by its end alone (``)`` or ``:`` would match lines the user wrote).
MIN_TAIL_CHARS = 6


#: Above this many differing lines (after the common head and tail), the diff lets popular lines
#: (blank lines, ``return``) anchor nothing: linear time instead of quadratic.
EXACT_DIFF_LINES = 2000


def changed_lines(baseline: Sequence[str], current: Sequence[str]) -> set[int]:
    """0-based lines of ``current`` that are new or replaced with respect to ``baseline``.

    The common head and tail are skipped first (one edit region: no diff at all), so a long
    file with repeated lines costs linear time."""
    n, m = len(baseline), len(current)
    head = 0
    while head < min(n, m) and baseline[head] == current[head]:
        head += 1
    tail = 0
    while tail < min(n, m) - head and baseline[n - 1 - tail] == current[m - 1 - tail]:
        tail += 1
    old, new = list(baseline[head : n - tail]), list(current[head : m - tail])
    if not new:
        return set()
    if not old:
        return set(range(head, m - tail))
    exact = max(len(old), len(new)) <= EXACT_DIFF_LINES
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=not exact)
    out: set[int] = set()
    for op, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if op in ("replace", "insert"):
            out.update(range(head + j1, head + j2))
    return out


def accepted_lines(lines: Sequence[str], accepted: Iterable[str]) -> set[int]:
    """0-based lines that hold an accepted suggestion unchanged: a line equal (stripped) to a
    line of the suggestion, or ending with its first line (the suggestion completed what the
    user had typed) when that part is long enough to tell."""
    whole: set[str] = set()
    tails: set[str] = set()
    for text in accepted:
        parts = [p.strip() for p in text.split("\n")]
        whole.update(p for p in parts[1:] if p)
        first = parts[0] if parts else ""
        if first:
            whole.add(first)
            if len(first.replace(" ", "")) >= MIN_TAIL_CHARS:
                tails.add(first)
    out = set()
    for i, line in enumerate(lines):
        s = line.strip()
        if s and (s in whole or any(s.endswith(t) for t in tails)):
            out.add(i)
    return out


def git_head_text(path: Path, timeout: float = 2.0) -> str | None:
    """The file's text at git's HEAD, or None (not in a repository, untracked, no git)."""
    try:
        top = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if top.returncode != 0:
            return None
        rel = path.resolve().relative_to(Path(top.stdout.strip()).resolve())
        shown = subprocess.run(
            ["git", "-C", top.stdout.strip(), "show", f"HEAD:{rel.as_posix()}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.debug("flags: no git baseline for %s: %s", path, exc)
        return None
    if shown.returncode != 0:
        return None
    try:
        return shown.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None
