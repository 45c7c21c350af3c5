"""Features of one line for the line-anomaly classifier: plain text and numbers in, numbers out.

Owns the line kinds (tree-sitter where a grammar exists, line rules otherwise), the distance to
the nearest comment, the edit distances between a written and a regenerated line, and the
feature vectors the two classifiers read (``CHEAP_FEATURES`` from the one teacher-forced pass,
``REGEN_FEATURES`` added for lines that were regenerated). No torch, no pygls.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# --- line kinds --------------------------------------------------------------------------------
KINDS = ("code", "blank", "comment", "import", "brace", "string", "header", "control", "jump")
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}

_COMMENT_RE = re.compile(r"^\s*(#|//|/\*|\*|--|;|%|<!--)")
_IMPORT_RE = re.compile(
    r"^\s*(import\s|from\s+\S+\s+import\s|#\s*include\b|using\s|use\s|require\b|package\s)"
)
_BRACE_RE = re.compile(r"^[\s{}()\[\];,]*$")
_HEADER_RE = re.compile(
    r"^\s*(async\s+def\s|def\s|class\s|function\b|fn\s|func\s|pub\s+fn\s|interface\s|struct\s|enum\s|@\w)"
)
_CONTROL_RE = re.compile(
    r"^\s*(if\b|elif\b|else\b|for\b|while\b|try\b|except\b|finally\b|with\b|switch\b|case\b|"
    r"match\b|do\b|catch\b|\}\s*else\b)"
)
_JUMP_RE = re.compile(r"^\s*(return\b|break\b|continue\b|raise\b|throw\b|yield\b|pass\b|goto\b)")
_STRING_ONLY_RE = re.compile(r"""^\s*[rbuf]*("|'|`)""", re.IGNORECASE)

_COMMENT_NODES = {"comment", "line_comment", "block_comment", "doc_comment"}
_STRING_NODES = {
    "string",
    "string_literal",
    "raw_string_literal",
    "template_string",
    "string_content",
}
_IMPORT_NODES = {
    "import_statement",
    "import_from_statement",
    "import_declaration",
    "preproc_include",
    "use_declaration",
    "package_clause",
    "future_import_statement",
}


#: The line rules in the order they are tried: the first that matches gives the kind.
_RULES = (
    ("comment", _COMMENT_RE),
    ("import", _IMPORT_RE),
    ("brace", _BRACE_RE),
    ("header", _HEADER_RE),
    ("control", _CONTROL_RE),
    ("jump", _JUMP_RE),
)


def rule_kind(line: str) -> str:
    """Kind of a line by line rules alone (any language)."""
    s = line.strip()
    if not s:
        return "blank"
    for kind, rule in _RULES:
        if rule.match(line):
            return kind
    if _STRING_ONLY_RE.match(line) and s[-1:] in "\"'`,":
        return "string"
    return "code"


@dataclass
class Syntax:
    """Per-line facts from tree-sitter (all False where no grammar is available)."""

    comment: list[bool]
    string: list[bool]
    imports: list[bool]
    error: list[bool]
    parsed: bool


def syntax_facts(text: str, lines: Sequence[str], language_id: str) -> Syntax:
    """Which lines are whole comments, inside multi-line strings, imports, or hold a parse error."""
    n = len(lines)
    comment, string, imports, error = [False] * n, [False] * n, [False] * n, [False] * n
    try:
        from tactful import syntax

        tree = syntax.parse(text, language_id)
    except Exception:
        tree = None
    if tree is None:
        return Syntax(comment, string, imports, error, False)
    stack = [tree.root_node]
    visited = 0
    while stack and visited < 200_000:
        node = stack.pop()
        visited += 1
        t = node.type
        r0, r1 = node.start_point[0], node.end_point[0]
        if node.is_error or node.is_missing:
            for r in range(r0, min(r1, r0 + 2) + 1):
                if r < n:
                    error[r] = True
        if t in _COMMENT_NODES:
            for r in range(r0, min(r1, n - 1) + 1):
                # A whole-line comment: nothing but the comment on the line.
                if r != r0 or not lines[r][: node.start_point[1]].strip():
                    comment[r] = True
            continue
        if t in _STRING_NODES and (
            r1 > r0 or (r0 < n and lines[r0].strip().startswith(('"', "'")))
        ):
            first = r0 if r0 < n and not lines[r0][: node.start_point[1]].strip() else r0 + 1
            for r in range(first, min(r1, n - 1) + 1):
                string[r] = True
            continue
        if t in _IMPORT_NODES and r0 < n:
            imports[r0] = True
        if node.has_error or t in _IMPORT_NODES or node.child_count:
            stack.extend(node.children)
    return Syntax(comment, string, imports, error, True)


def line_kinds(lines: Sequence[str], facts: Syntax) -> list[str]:
    """One kind per line, tree-sitter facts first, then line rules."""
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            out.append("blank")
        elif facts.string[i]:
            out.append("string")
        elif facts.comment[i]:
            out.append("comment")
        elif facts.imports[i]:
            out.append("import")
        else:
            k = rule_kind(line)
            # Rules see '#' as a comment in any language; trust the parser where there is one.
            if (
                k == "comment"
                and facts.parsed
                and not line.lstrip().startswith(("//", "/*", "*", "#"))
            ):
                k = "code"
            out.append(k)
    return out


def comment_distance(kinds: Sequence[str], lines: Sequence[str], cap: int = 20) -> list[int]:
    """Lines to the nearest comment (a comment line, or a line with a trailing ``#``/``//``)."""
    n = len(kinds)
    has = [
        k == "comment" or (" # " in ln or " // " in ln) for k, ln in zip(kinds, lines, strict=True)
    ]
    dist = [cap] * n
    last = -(10**9)
    for i in range(n):
        if has[i]:
            last = i
        dist[i] = min(cap, i - last)
    last = 10**9
    for i in range(n - 1, -1, -1):
        if has[i]:
            last = i
        dist[i] = min(dist[i], cap, last - i)
    return dist


def document_lines(text: str) -> list[str]:
    """The lines of a document as the flagger numbers them: a final newline ends the last line
    (it does not start a new one) and a ``\\r`` before ``\\n`` is dropped."""
    raw = text.split("\n")
    if raw and raw[-1] == "" and len(raw) > 1:
        raw = raw[:-1]
    return [ln[:-1] if ln.endswith("\r") else ln for ln in raw]


# --- edit distances ----------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def code_tokens(s: str) -> list[str]:
    """Identifiers, numbers and single punctuation characters."""
    return _TOKEN_RE.findall(s)


def levenshtein(a: Sequence[object], b: Sequence[object], cap: int = 400) -> int:
    """Edit distance of two sequences (each cut to ``cap`` items to bound the cost)."""
    a, b = a[:cap], b[:cap]
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def norm_edit(a: Sequence[object], b: Sequence[object]) -> float:
    """Edit distance divided by the longer length (0 = same, 1 = nothing in common)."""
    m = max(len(a), len(b))
    return levenshtein(a, b) / m if m else 0.0


def ws_normal(s: str) -> str:
    """The line with all whitespace removed (``a = b`` equals ``a=b``)."""
    return "".join(s.split())


# --- feature vectors ---------------------------------------------------------------------------
#: Features of the teacher-forced pass and of the line's place in the file.
PASS_FEATURES = (
    "n_tok",
    "lp_min",
    "lp_mean",
    "lp_sum",
    "ent_mean",
    "ent_max",
    "surp_mean",
    "surp_max",
    "lp_min_rank",
    "lp_mean_z",
    "prev_lp_mean",
    "next_lp_mean",
    "next_lp_min",
    "kind",
    "comment_dist",
    "indent",
    "length",
    "rel_pos",
    "has_num",
    "has_cmp",
    "parse_error",
    "log_lines",
)
#: Features of the written line's text alone (:func:`text_features`): the kinds of token that
#: real contest bugs touch (constants, +/- 1 adjustments, range bounds, indexes, printing).
TEXT_FEATURES = (
    "tx_ints",
    "tx_int_digits",
    "tx_pm1",
    "tx_range",
    "tx_index",
    "tx_print",
    "tx_strings",
    "tx_arith",
    "tx_minmax",
    "tx_depth",
    "tx_tokens",
    "tx_aug",
    "tx_divmod",
    "tx_cmps",
    "tx_input",
    "tx_names",
)
#: Features of the written line among the other lines of its window (:func:`context_text_features`):
#: names and integer literals found on no other line (a wrong variable or constant), and how close
#: the line is to its nearest look-alike (a copied line edited in one place).
CONTEXT_TEXT_FEATURES = (
    "cx_once_names",
    "cx_once_ints",
    "cx_twin_sim",
    "cx_twin_diff",
)
#: What the prior classifier (``prior.txt``) reads: the line's text and place, no model output.
#: Its score is the cheap feature ``prior`` (NaN until :meth:`tactful.flags.model.FlagModel.fill_prior`).
#: (The pass features from ``kind`` on are the line's own facts, not the model's.)
PRIOR_INPUTS = (
    *PASS_FEATURES[PASS_FEATURES.index("kind") :],
    *TEXT_FEATURES,
    *CONTEXT_TEXT_FEATURES,
)
CHEAP_FEATURES = PASS_FEATURES + TEXT_FEATURES + CONTEXT_TEXT_FEATURES + ("prior",)
REGEN_FEATURES = (
    "regen",
    "ed_char",
    "ed_tok",
    "exact_ws",
    "gen_lp_sum",
    "gen_lp_mean",
    "gen_minus_orig",
    "gen_len_ratio",
    "gen_empty",
    "gen_n_tok",
    "gen_first_lp",
)
ALL_FEATURES = CHEAP_FEATURES + REGEN_FEATURES
NAN = float("nan")


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else NAN


_STR_LIT_RE = re.compile(r"""[rbuf]*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.IGNORECASE)
_INT_LIT_RE = re.compile(r"(?<![\w.])\d+(?![\w.])")
_PM1_RE = re.compile(r"[+-]\s*1(?![\w.])")
_ARITH_RE = re.compile(r"\*\*|//|[+\-*/%]")
_CMP_RE = re.compile(r"==|!=|<=|>=|(?<![<>=-])[<>](?![<>=])")
_AUG_RE = re.compile(r"(?:\*\*|//|<<|>>|[+\-*/%&|^@])=(?!=)")
_NAME_RE = re.compile(r"(?<![\w.])[A-Za-z_]\w*")


def _code_part(line: str) -> str:
    """The line with string literals emptied and a trailing comment cut."""
    return _STR_LIT_RE.sub('""', line.strip()).split("#", 1)[0]


def text_features(line: str) -> list[float]:
    """``TEXT_FEATURES`` of one written line (string literals and a trailing comment removed
    first). The same function serves the flagger and the training (rows are recomputed from
    the recorded text), so the two cannot drift apart."""
    strings = len(_STR_LIT_RE.findall(line.strip()))
    code = _code_part(line)
    ints = _INT_LIT_RE.findall(code)
    depth = deepest = 0
    for c in code:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth = max(0, depth - 1)
    return [
        float(len(ints)),
        float(max((len(d) for d in ints), default=0)),
        float(len(_PM1_RE.findall(code))),
        float(code.count("range(")),
        float(code.count("[")),
        float("print(" in code),
        float(strings),
        float(len(_ARITH_RE.findall(_AUG_RE.sub(" ", code)))),
        float(code.count("min(") + code.count("max(")),
        float(deepest),
        float(len(code_tokens(code))),
        float(bool(_AUG_RE.search(code))),
        float(code.count("//") + code.count("%")),
        float(len(_CMP_RE.findall(code))),
        float("input(" in code or "readline" in code),
        float(len(set(_NAME_RE.findall(code)))),
    ]


#: Lines either side that :func:`context_text_features` compares a line with (bounds the cost).
TWIN_REACH = 40


def context_text_features(lines: Sequence[str]) -> list[list[float]]:
    """``CONTEXT_TEXT_FEATURES`` of every line of ``lines`` (a window or a short document)."""
    codes = [_code_part(ln) for ln in lines]
    names = [set(_NAME_RE.findall(c)) for c in codes]
    ints = [set(_INT_LIT_RE.findall(c)) for c in codes]
    toks = [code_tokens(c) for c in codes]
    name_lines: dict[str, int] = {}
    int_lines: dict[str, int] = {}
    for ns, xs in zip(names, ints, strict=True):
        for x in ns:
            name_lines[x] = name_lines.get(x, 0) + 1
        for x in xs:
            int_lines[x] = int_lines.get(x, 0) + 1
    bags = [Counter(t) for t in toks]
    out = []
    for i, t in enumerate(toks):
        best, diff = 0.0, 0.0
        if len(t) >= 3:
            # An edit distance is at least the longer length less the tokens in common, so the
            # candidates are tried by that bound and the exact distances stop once none can win.
            bounds = []
            for j in range(max(0, i - TWIN_REACH), min(len(toks), i + TWIN_REACH + 1)):
                u = toks[j]
                if j == i or len(u) < 3 or abs(len(u) - len(t)) > len(t):
                    continue
                m = max(len(t), len(u))
                common = sum((bags[i] & bags[j]).values())
                bounds.append((common / m, j))
            bounds.sort(key=lambda b: (-b[0], b[1]))
            first = len(toks)
            for bound, j in bounds:
                if bound < best - 1e-9:
                    break
                u = toks[j]
                d = levenshtein(t, u, cap=80)
                sim = 1.0 - d / max(len(t), len(u))
                if sim > best + 1e-9 or (sim > 1e-9 and abs(sim - best) <= 1e-9 and j < first):
                    best, diff, first = sim, float(d), j
        out.append(
            [
                float(sum(1 for x in names[i] if name_lines[x] == 1)),
                float(sum(1 for x in ints[i] if int_lines[x] == 1)),
                best,
                diff,
            ]
        )
    return out


@dataclass
class _PassStats:
    """Each line's mean and lowest token log-probability from the teacher-forced pass, and what
    places a line among the others: the sorted minima of the non-blank lines, and the mean and
    spread of their means."""

    means: list[float]
    mins: list[float]
    finite_mins: list[float]
    mu: float
    sd: float


def _pass_stats(kinds: Sequence[str], line_lp: Sequence[Sequence[float]]) -> _PassStats:
    means = [_mean(lp) for lp in line_lp]
    mins = [min(lp) if lp else NAN for lp in line_lp]
    finite_mins = sorted(
        m for m, k in zip(mins, kinds, strict=True) if not math.isnan(m) and k != "blank"
    )
    fm = [m for m, k in zip(means, kinds, strict=True) if not math.isnan(m) and k != "blank"]
    mu = _mean(fm) if fm else 0.0
    sd = math.sqrt(_mean([(x - mu) ** 2 for x in fm])) if len(fm) > 1 else 1.0
    return _PassStats(means, mins, finite_mins, mu, sd or 1.0)


def _pass_row(
    i: int, n: int, lp: Sequence[float], ent: Sequence[float], st: _PassStats
) -> list[float]:
    """The model's features of line ``i`` of ``n`` (``PASS_FEATURES`` before ``kind``)."""
    surp = [-a - h for a, h in zip(lp, ent, strict=False)]
    mins, means = st.mins, st.means
    rank = (
        bisect.bisect_left(st.finite_mins, mins[i]) / max(1, len(st.finite_mins))
        if not math.isnan(mins[i])
        else NAN
    )
    return [
        float(len(lp)),
        mins[i],
        means[i],
        float(sum(lp)) if lp else NAN,
        _mean(ent),
        max(ent) if ent else NAN,
        _mean(surp),
        max(surp) if surp else NAN,
        rank,
        (means[i] - st.mu) / st.sd if not math.isnan(means[i]) else NAN,
        means[i - 1] if i > 0 else NAN,
        means[i + 1] if i + 1 < n else NAN,
        mins[i + 1] if i + 1 < n else NAN,
    ]


def _place_row(i: int, n: int, line: str, kind: str, cdist: int, error: bool) -> list[float]:
    """Line ``i``'s own facts (``PASS_FEATURES`` from ``kind`` on): its kind, the distance to a
    comment, its indent, length and place in the file, digits, comparisons, a parse error."""
    stripped = line.strip()
    return [
        float(KIND_INDEX[kind]),
        float(cdist),
        float(len(line) - len(line.lstrip())),
        float(len(stripped)),
        i / max(1, n - 1),
        float(any(c.isdigit() for c in stripped)),
        float(any(op in stripped for op in ("==", "!=", "<", ">", "<=", ">="))),
        float(error),
        math.log(n + 1),
    ]


def cheap_features(
    lines: Sequence[str],
    kinds: Sequence[str],
    facts: Syntax,
    line_lp: Sequence[Sequence[float]],
    line_ent: Sequence[Sequence[float]],
) -> list[list[float]]:
    """One row of ``CHEAP_FEATURES`` per line from the teacher-forced pass."""
    n = len(lines)
    cdist = comment_distance(kinds, lines)
    stats = _pass_stats(kinds, line_lp)
    context = context_text_features(lines)
    return [
        _pass_row(i, n, line_lp[i], line_ent[i], stats)
        + _place_row(i, n, lines[i], kinds[i], cdist[i], facts.error[i])
        + text_features(lines[i])
        + context[i]
        + [NAN]  # prior: filled in by the classifier that has one
        for i in range(n)
    ]


def regen_features(
    original: str, generated: str, orig_lp: Sequence[float], gen_lp: Sequence[float]
) -> list[float]:
    """``REGEN_FEATURES`` comparing the written line with the model's regeneration."""
    o, g = original.strip(), generated.strip()
    ot, gt = code_tokens(o), code_tokens(g)
    return [
        1.0,
        norm_edit(o, g),
        norm_edit(ot, gt),
        float(ws_normal(o) == ws_normal(g)),
        float(sum(gen_lp)) if gen_lp else 0.0,
        _mean(gen_lp) if gen_lp else NAN,
        (float(sum(gen_lp)) - float(sum(orig_lp))) if orig_lp else NAN,
        len(g) / max(1, len(o)),
        float(not g),
        float(len(gen_lp)),
        gen_lp[0] if gen_lp else NAN,
    ]


def missing_regen() -> list[float]:
    """The regeneration features of a line that was not regenerated."""
    return [0.0] + [NAN] * (len(REGEN_FEATURES) - 1)
