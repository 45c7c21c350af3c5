"""Per-request choice of repository context, and its rendering at the start of the prompt.

Deterministic and cheap: everything comes from the index and the open documents' text, never
from a scan. What may be chosen, best first when the budget is short:

1. the enclosing class's other members (those the prompt's window of the file does not show)
   and the members of its base classes from other files;
2. definitions of the names the file imports from the workspace and uses near the cursor
   (signature and excerpt), then of the other names it imports (signatures);
3. snippets of open or recently edited files similar to the lines above the cursor (Jaccard
   similarity of identifier sets over sliding windows).

The chosen parts are rendered grouped by file, the files in the order the current file imports
them and the similar snippets last, so that the rendered text changes only when the chosen set
changes: it is the start of the prompt, and the model's KV cache of it is reused across
keystrokes. The cursor's own line never takes part in the choice (typing on it changes nothing).
"""

from __future__ import annotations

import keyword
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tactful.workspace.imports import Binding, ModuleMap, bindings
from tactful.workspace.index import Definition, FileEntry, Import

CHARS_PER_TOKEN = 3.0
#: The "near the cursor" window: this many lines above and below, in steps of NEAR_STEP lines.
NEAR_ABOVE = 40
NEAR_BELOW = 10
NEAR_STEP = 8
#: Similar snippets: windows of this many lines, moved by SNIPPET_STEP; the query is the
#: SNIPPET_LINES lines above the cursor's line.
SNIPPET_LINES = 10
SNIPPET_STEP = 5
SNIPPET_MIN_JACCARD = 0.2
MAX_SNIPPETS = 2
MAX_MODULE_MEMBERS = 30
#: Scores of the enclosing class's members: named near the cursor (before everything else), and
#: the others (after the imported names used near the cursor, 2.5, and just below those used
#: above it, 1.7).
MEMBER_NEAR = 4.0
MEMBER_OTHER = 1.6

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Python's keywords and the names every file uses (never a clue to another file's code).
_KEYWORDS = frozenset(keyword.kwlist) | {
    "self",
    "cls",
    "const",
    "let",
    "var",
    "function",
    "new",
    "this",
    "null",
    "undefined",
}


@dataclass(frozen=True)
class RepoFormat:
    """How a model family spells repository context."""

    name: str
    repo_token: str = ""
    file_token: str = ""

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(t for t in (self.repo_token, self.file_token) if t)


STARCODER2 = RepoFormat("starcoder2", "<repo_name>", "<file_sep>")
QWEN = RepoFormat("qwen2.5-coder", "<|repo_name|>", "<|file_sep|>")
COMMENTS = RepoFormat("comments")


def detect_format(vocabulary: Sequence[str] | set[str] | None) -> RepoFormat:
    """The repository format whose tokens the model's vocabulary has, else commented headers."""
    if not vocabulary:
        return COMMENTS
    vocab = set(vocabulary)
    for fmt in (QWEN, STARCODER2):
        if all(t in vocab for t in fmt.tokens):
            return fmt
    return COMMENTS


_LINE_COMMENT = {
    "python": "#",
    "ruby": "#",
    "shellscript": "#",
    "yaml": "#",
    "toml": "#",
    "lua": "--",
}


def comment_marker(language: str) -> str:
    return _LINE_COMMENT.get(language, "//")


@dataclass
class Part:
    """One chosen piece: a definition (with or without its excerpt) or a snippet."""

    path: str
    rel: str
    line: int
    text: str
    score: float
    #: Import order of the file (for the rendering order); snippets come after all files.
    order: int
    snippet: bool = False
    #: A member is only shown under its class: the line of the class's part in the same file.
    needs: int | None = None


@dataclass
class Selection:
    """The chosen parts and the rendered preamble."""

    parts: list[Part] = field(default_factory=list)
    text: str = ""
    tokens: int = 0


def identifiers(text: str) -> set[str]:
    return {w for w in _IDENT.findall(text) if w not in _KEYWORDS and len(w) > 1}


def _near_text(lines: list[str], cursor_line: int) -> str:
    """Lines near the cursor, the cursor's own line left out, the window moved in steps."""
    block = cursor_line // NEAR_STEP * NEAR_STEP
    lo = max(0, block - NEAR_ABOVE)
    hi = min(len(lines), block + NEAR_STEP + NEAR_BELOW)
    return "\n".join(ln for i, ln in enumerate(lines[lo:hi], lo) if i != cursor_line)


def _def_text(d: Definition, with_excerpt: bool) -> str:
    body = d.excerpt if with_excerpt and d.excerpt else ""
    if d.kind in ("variable", "class_attribute"):
        return d.signature
    indent = d.signature[: len(d.signature) - len(d.signature.lstrip())]
    if body and not all(ln.lstrip().startswith("#") for ln in body.split("\n")):
        return d.signature + "\n" + body
    if body:
        return d.signature + "\n" + body + "\n" + indent + "    ..."
    if d.kind == "class":
        return d.signature
    return d.signature + ("\n" + indent + "    ..." if d.signature.rstrip().endswith(":") else "")


def _tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


def _class_members(entry: FileEntry, cls: str) -> list[Definition]:
    return [d for d in entry.defs if d.parent == cls]


def _enclosing_class(entry: FileEntry, cursor_line: int, lines: list[str]) -> Definition | None:
    """The top-level class whose body holds the cursor (by the index entry's class lines and
    the cursor line's indentation)."""
    best = None
    for d in entry.defs:
        if d.kind == "class" and d.parent is None and d.line <= cursor_line:
            best = d
    if best is None:
        return None
    # The cursor is in that class when no line between them starts at column 0 with code.
    for i in range(best.line + 1, min(cursor_line, len(lines))):
        ln = lines[i]
        if ln and not ln[0].isspace() and not ln.startswith(("#", ")", "@", '"' * 3, "'" * 3)):
            return None
    cur = lines[cursor_line] if cursor_line < len(lines) else ""
    if cur.strip() and not cur[0].isspace():
        return None
    return best


def _windows(text: str) -> list[tuple[int, str, set[str]]]:
    lines = text.split("\n")
    out = []
    for start in range(0, max(1, len(lines) - SNIPPET_LINES + 1), SNIPPET_STEP):
        chunk = "\n".join(lines[start : start + SNIPPET_LINES])
        ids = identifiers(chunk)
        if len(ids) >= 3:
            out.append((start, chunk, ids))
    return out


class SnippetWindows:
    """Sliding windows of open / recently edited documents, cached per text."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, list[tuple[int, str, set[str]]]]] = {}

    def get(self, path: str, text: str) -> list[tuple[int, str, set[str]]]:
        hit = self._cache.get(path)
        if hit is not None and hit[0] is text:
            return hit[1]
        if hit is not None and hit[0] == text:
            self._cache[path] = (text, hit[1])
            return hit[1]
        wins = _windows(text)
        self._cache[path] = (text, wins)
        return wins

    def forget(self, path: str) -> None:
        self._cache.pop(path, None)


def select(
    *,
    modules: ModuleMap,
    current: FileEntry | None,
    current_path: str | None,
    imports: Sequence[Import],
    text: str,
    offset: int,
    prompt_start: int,
    budget_tokens: int,
    others: Sequence[tuple[str, str, str]] = (),
    snippets: SnippetWindows | None = None,
) -> list[Part]:
    """The parts of repository context for the cursor at ``offset`` in ``text``, within
    ``budget_tokens``, in rendering order. ``others``: (path, rel, text) of open or recently
    edited documents other than the current one; ``prompt_start``: where the prompt's window
    of the current file starts (members shown there are not repeated)."""
    lines = text.split("\n")
    cursor_line = text.count("\n", 0, offset)
    near_text = _near_text(lines, cursor_line)
    near = identifiers(near_text)
    cursor = _Cursor(lines, cursor_line, text.count("\n", 0, prompt_start), near)
    binds = bindings(modules, current_path, imports)
    file_order: dict[str, int] = {}
    for b in binds:
        file_order.setdefault(b.entry.path, len(file_order))
    candidates: list[Part] = []
    if current is not None:
        candidates += _class_parts(current, cursor, binds, file_order)
    above = "\n".join(lines[:cursor_line])
    candidates += _imported_parts(modules, binds, file_order, near_text, above)
    if others and snippets is not None:
        candidates += _snippet_parts(lines, cursor_line, text, current_path, others, snippets)
    return _within_budget(candidates, budget_tokens)


@dataclass(frozen=True)
class _Cursor:
    """Where the cursor is: the document's lines, the cursor's line, the first line the prompt's
    window of the file shows, and the identifiers near the cursor (its own line left out)."""

    lines: list[str]
    line: int
    first_prompt_line: int
    near: set[str]


def _def_part(
    entry: FileEntry,
    d: Definition,
    score: float,
    order: int,
    excerpt: bool,
    needs: int | None = None,
) -> Part:
    """A definition of ``entry`` as a candidate part (with its excerpt when ``excerpt``)."""
    return Part(entry.path, entry.rel, d.line, _def_text(d, excerpt), score, order, needs=needs)


def _class_parts(
    current: FileEntry, cursor: _Cursor, binds: Sequence[Binding], file_order: dict[str, int]
) -> list[Part]:
    """Candidates of the class enclosing the cursor: its members outside the prompt's window,
    and its base classes (from other files) with their members."""
    cls = _enclosing_class(current, cursor.line, cursor.lines)
    if cls is None:
        return []
    first, near = cursor.first_prompt_line, cursor.near
    out: list[Part] = []
    members = [
        m for m in _class_members(current, cls.name) if m.line < first or m.line > cursor.line
    ]
    # Members named near the cursor first of all; the others after the imported names used
    # near the cursor, with those used above it (a class of many members would otherwise
    # take the whole budget from the names the line is likelier to need).
    scores = [MEMBER_NEAR if m.name in near else MEMBER_OTHER for m in members]
    if members and cls.line < first:
        out.append(_def_part(current, cls, max(scores) + 0.05, -1, False))
    for m, score in zip(members, scores, strict=True):
        needs = cls.line if cls.line < first else None
        out.append(_def_part(current, m, score, -1, False, needs))
    by_name = {b.name: b for b in binds}
    for base in cls.bases:
        bb = by_name.get(base.split(".")[-1])
        if bb is None or bb.definition is None or bb.definition.kind != "class":
            continue
        order = file_order[bb.entry.path]
        base_members = _class_members(bb.entry, bb.definition.name)
        scores = [MEMBER_NEAR - 1.1 if m.name in near else MEMBER_OTHER - 0.1 for m in base_members]
        out.append(_def_part(bb.entry, bb.definition, max([2.5, *scores]), order, False))
        for m, score in zip(base_members, scores, strict=True):
            out.append(_def_part(bb.entry, m, score, order, False, bb.definition.line))
    return out


def _imported_parts(
    modules: ModuleMap,
    binds: Sequence[Binding],
    file_order: dict[str, int],
    near_text: str,
    above: str,
) -> list[Part]:
    """Candidates of the names the file imports from the workspace: those used near the cursor
    first, with excerpts; then the rest, signatures; an imported class brings its members."""
    near, used_above = identifiers(near_text), identifiers(above)
    out: list[Part] = []
    for b in binds:
        order = file_order[b.entry.path]
        is_near = b.name.split(".")[-1] in near or b.name in near
        base_score = 2.0 if is_near else (1.2 if b.name in used_above else 1.0)
        base_score -= 0.001 * order
        if b.definition is None:
            attrs = (_attributes_of(b.name, near_text), _attributes_of(b.name, above))
            out += _module_parts(modules, b, attrs, order, base_score, file_order)
            continue
        d = b.definition
        out.append(_def_part(b.entry, d, base_score + 0.5, order, is_near))
        if d.kind == "class":
            members = [
                m
                for m in _class_members(b.entry, d.name)
                if not m.name.startswith("__") or m.name == "__init__"
            ]
            # Members after every imported name's own definition, unless named near the cursor.
            for m in members[:MAX_MODULE_MEMBERS]:
                score = base_score - 1.0 + 1.2 * (m.name in near)
                out.append(_def_part(b.entry, m, score, order, False, d.line))
    return out


def _attributes_of(name: str, text: str) -> set[str]:
    """The attributes ``text`` takes of ``name`` (``name.attr``)."""
    return set(re.findall(r"(?<![\w.])" + re.escape(name) + r"\.([A-Za-z_]\w*)", text))


def _module_parts(
    modules: ModuleMap,
    b: Binding,
    attrs: tuple[set[str], set[str]],
    order: int,
    score: float,
    file_order: dict[str, int],
) -> list[Part]:
    """A module bound by an import: the attributes taken of it near the cursor (``m.name``,
    with excerpts), then those taken of it above (headers; private ones too, followed through a
    package's re-exports), then its other public top-level definitions (headers)."""
    out: list[Part] = []
    own = {d.name: d for d in b.entry.defs if d.parent is None}
    module = modules.name_of.get(b.entry.path)
    near, above = attrs
    for name in sorted(near | above):
        is_near = name in near
        entry, d = b.entry, own.get(name)
        if d is None and module is not None:
            found = modules.resolve(module, name)
            if found is None or found[1] is None:
                continue
            entry, d = found
        if d is None:
            continue
        o = order if entry is b.entry else file_order.setdefault(entry.path, len(file_order))
        part_score = score + (0.6 if is_near else -0.3)
        out.append(Part(entry.path, entry.rel, d.line, _def_text(d, is_near), part_score, o))
    rest = [d for d in own.values() if not d.name.startswith("_") and d.name not in near | above]
    out += [
        Part(b.entry.path, b.entry.rel, d.line, _def_text(d, False), score - 1.0, order)
        for d in rest[: MAX_MODULE_MEMBERS * 2]
    ]
    return out


def _snippet_parts(
    lines: list[str],
    cursor_line: int,
    text: str,
    current_path: str | None,
    others: Sequence[tuple[str, str, str]],
    snippets: SnippetWindows,
) -> list[Part]:
    """Candidates from open / recently edited documents: per document, the window most similar
    to the lines above the cursor (one the current file already holds adds nothing), the best
    :data:`MAX_SNIPPETS` of them."""
    q_lines = lines[max(0, cursor_line - SNIPPET_LINES) : cursor_line]
    query = identifiers("\n".join(q_lines))
    if len(query) < 3:
        return []
    scored: list[tuple[float, str, str, int, str]] = []
    for path, rel, other in others:
        if path == current_path:
            continue
        best: tuple[float, int, str] | None = None
        for start, chunk, ids in snippets.get(path, other):
            j = len(query & ids) / len(query | ids)
            if (best is None or j > best[0]) and chunk.strip() not in text:
                best = (j, start, chunk)
        if best is not None and best[0] >= SNIPPET_MIN_JACCARD:
            scored.append((best[0], path, rel, best[1], best[2]))
    scored.sort(key=lambda s: (-s[0], s[1], s[3]))
    return [
        Part(path, rel, start, chunk, 0.5 + j, 10_000, snippet=True)
        for j, path, rel, start, chunk in scored[:MAX_SNIPPETS]
    ]


def _within_budget(candidates: Sequence[Part], budget_tokens: int) -> list[Part]:
    """Greedy by score within the budget (a member only after its class; a file's first part
    pays for its header); then the rendering order."""
    budget = budget_tokens
    chosen: list[Part] = []
    seen: set[tuple[str, int, bool]] = set()
    for p in sorted(candidates, key=lambda p: (-p.score, p.order, p.path, p.line)):
        key = (p.path, p.line, p.snippet)
        if key in seen or (p.needs is not None and (p.path, p.needs, False) not in seen):
            continue
        cost = _tokens(p.text) + (8 if not any(c.path == p.path for c in chosen) else 0)
        if cost > budget:
            continue
        seen.add(key)
        chosen.append(p)
        budget -= cost
    return _rendering_order(chosen)


def _rendering_order(chosen: Sequence[Part]) -> list[Part]:
    """Snippets first, then the files, the file of the best part last (nearest the current
    file, where a small model attends most); a file's parts in their line order. It depends
    only on the chosen parts and their scores, which change only with the chosen set's inputs
    (not while a line is typed), so the preamble stays the same across keystrokes."""
    best: dict[str, tuple[float, int]] = {}
    for p in chosen:
        if not p.snippet:
            got = best.get(p.path)
            best[p.path] = (max(p.score, got[0]) if got else p.score, p.order)
    return sorted(
        chosen,
        key=lambda p: (not p.snippet, best.get(p.path, (0.0, 0)), p.path, p.line),
    )


def render(
    parts: Sequence[Part],
    fmt: RepoFormat,
    *,
    repo: str,
    current_rel: str,
    language: str,
) -> str:
    """The preamble: the parts grouped by file in the model family's repository format, ending
    with the current file's header (the file's own prefix follows it)."""
    if not parts:
        return ""
    groups: list[tuple[str, list[Part]]] = []
    for p in parts:
        label = p.rel
        if groups and groups[-1][0] == label and not p.snippet:
            groups[-1][1].append(p)
        else:
            groups.append((label, [p]))
    if fmt.file_token:
        out = [f"{fmt.repo_token}{repo}" + ("\n" if fmt is QWEN else "")]
        for rel, ps in groups:
            body = _group_body(ps)
            out.append(f"{fmt.file_token}{rel}\n{body}\n")
        out.append(f"{fmt.file_token}{current_rel}\n")
        return "".join(out)
    c = comment_marker(language)
    out = []
    for rel, ps in groups:
        head = f"{c} Compare this snippet from {rel}:" if ps[0].snippet else f"{c} From {rel}:"
        body = "\n".join(f"{c} {ln}" if ln.strip() else c for ln in _group_body(ps).split("\n"))
        out.append(f"{head}\n{body}\n")
    out.append(f"{c} Path: {current_rel}\n")
    return "".join(out)


def _group_body(ps: Sequence[Part]) -> str:
    chunks: list[str] = []
    for p in ps:
        chunks.append(p.text)
    return "\n".join(chunks)


def repo_name(root: str | None) -> str:
    return os.path.basename(root.rstrip(os.sep)) if root else "workspace"
