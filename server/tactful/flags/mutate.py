"""Single-line mutations of real code, the synthetic bugs of the flag classifiers' training data:
operator swap, off-by-one, wrong variable, wrong constant, negated condition, swapped arguments
and deleted line. Plain functions over lines; not used at run time.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tactful.flags import features as ff

_KEYWORDS = {
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "self",
    "cls",
    "print",
    "len",
    "range",
    "int",
    "str",
    "list",
    "dict",
    "set",
    "tuple",
    "isinstance",
}
_OP_SWAPS = [
    (r"(?<![<>=!])<=(?!=)", "<"),
    (r"(?<![<>=!<])<(?![<=])", "<="),
    (r"(?<![<>=!])>=(?!=)", ">"),
    (r"(?<![<>=!>-])>(?![>=])", ">="),
    (r"==", "!="),
    (r"!=", "=="),
    (r" \+ ", " - "),
    (r" - ", " + "),
    (r" \* ", " // "),
    (r" // ", " * "),
    (r"\+=", "-="),
    (r"-=", "+="),
    (r" and ", " or "),
    (r" or ", " and "),
    (r" is not ", " is "),
    (r" not in ", " in "),
    (r"(?<![<>=!])<(?![<=])", ">"),
    (r" % ", " // "),
]
_INT_RE = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
_IDENT_RE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)(?!\w)")
_COND_RE = re.compile(r"^(\s*)(if|elif|while)\s+(.+):(\s*(#.*)?)$")
_CALL2_RE = re.compile(r"(\w+)\(([^(),\[\]*=]+), ([^(),\[\]*=]+)\)")
_INDEX_RE = re.compile(r"\[(\w+)\]")
_STRING_RE = re.compile(r"""("[^"]*"|'[^']*')""")


@dataclass
class Mutation:
    kind: str
    #: 0-based line of the mutated file that holds the bug.
    line: int
    before: str
    after: str


def _outside_strings(line: str, start: int) -> bool:
    code = line.split("#", 1)[0] if "#" in line else line
    if start >= len(code):
        return False
    return all(not (m.start() <= start < m.end()) for m in _STRING_RE.finditer(line))


def _sub_one(pattern: str, repl: str, line: str, rng: random.Random) -> str | None:
    hits = [m for m in re.finditer(pattern, line) if _outside_strings(line, m.start())]
    if not hits:
        return None
    m = rng.choice(hits)
    return line[: m.start()] + repl + line[m.end() :]


def _op_swap(line: str, ctx: Sequence[str], rng: random.Random) -> str | None:
    cands = [(p, r) for p, r in _OP_SWAPS if re.search(p, line)]
    rng.shuffle(cands)
    for p, r in cands:
        out = _sub_one(p, r, line, rng)
        if out:
            return out
    return None


def _off_by_one(line: str, ctx: Sequence[str], rng: random.Random) -> str | None:
    choices = []
    if _INT_RE.search(line):
        choices.append("int")
    if _INDEX_RE.search(line):
        choices.append("index")
    if "range(" in line:
        choices.append("range")
    if not choices:
        return None
    what = rng.choice(choices)
    if what == "int":
        hits = [m for m in _INT_RE.finditer(line) if _outside_strings(line, m.start())]
        if not hits:
            return None
        m = rng.choice(hits)
        v = int(m.group(1))
        nv = v + 1 if v == 0 or rng.random() < 0.5 else v - 1
        return line[: m.start()] + str(nv) + line[m.end() :]
    if what == "index":
        m = rng.choice(list(_INDEX_RE.finditer(line)))
        return line[: m.start()] + f"[{m.group(1)} {rng.choice('+-')} 1]" + line[m.end() :]
    i = line.index("range(")
    depth, j = 0, i + 5
    while j < len(line):
        depth += {"(": 1, ")": -1}.get(line[j], 0)
        if depth == 0:
            break
        j += 1
    if j >= len(line):
        return None
    return line[:j] + f" {rng.choice('+-')} 1" + line[j:]


def _wrong_constant(line: str, ctx: Sequence[str], rng: random.Random) -> str | None:
    hits = [m for m in _INT_RE.finditer(line) if _outside_strings(line, m.start())]
    if not hits:
        return None
    m = rng.choice(hits)
    v = int(m.group(1))
    pool = [x for x in (0, 1, 2, 3, 10, 100, v * 2, v + 10) if x != v and abs(x - v) != 1]
    return line[: m.start()] + str(rng.choice(pool)) + line[m.end() :]


def _idents(line: str) -> list[re.Match[str]]:
    return [
        m
        for m in _IDENT_RE.finditer(line)
        if m.group(1) not in _KEYWORDS
        and _outside_strings(line, m.start())
        and not line[m.end() :].lstrip().startswith("(")
    ]


def _wrong_variable(line: str, ctx: Sequence[str], rng: random.Random) -> str | None:
    hits = _idents(line)
    if not hits:
        return None
    m = rng.choice(hits)
    here = {h.group(1) for h in hits}
    pool = sorted({h.group(1) for c in ctx for h in _idents(c)} - here - {m.group(1)})
    if not pool:
        return None
    return line[: m.start()] + rng.choice(pool) + line[m.end() :]


def _negate(line: str, ctx: Sequence[str], rng: random.Random) -> str | None:
    m = _COND_RE.match(line)
    if not m:
        return None
    ind, kw, cond, tail = m.group(1), m.group(2), m.group(3).strip(), m.group(4) or ""
    if cond.startswith("not "):
        new = cond[4:]
    elif re.fullmatch(r"[\w.\[\]]+(\(.*\))?", cond):
        new = f"not {cond}"
    else:
        new = f"not ({cond})"
    return f"{ind}{kw} {new}:{tail}"


def _swap_args(line: str, ctx: Sequence[str], rng: random.Random) -> str | None:
    hits = [m for m in _CALL2_RE.finditer(line) if m.group(2).strip() != m.group(3).strip()]
    if not hits:
        return None
    m = rng.choice(hits)
    return (
        line[: m.start()]
        + f"{m.group(1)}({m.group(3).strip()}, {m.group(2).strip()})"
        + line[m.end() :]
    )


MUTATORS = {
    "operator_swap": _op_swap,
    "off_by_one": _off_by_one,
    "wrong_variable": _wrong_variable,
    "wrong_constant": _wrong_constant,
    "negated_condition": _negate,
    "swapped_arguments": _swap_args,
}
MUTATION_KINDS = (*MUTATORS, "deleted_line")


def mutate(
    lines: Sequence[str], rng: random.Random, kind: str | None = None
) -> tuple[list[str], Mutation] | None:
    """One single-line mutation of ``lines`` (a new list and what was done), or None."""
    kinds = [ff.rule_kind(ln) for ln in lines]
    facts = ff.syntax_facts("\n".join(lines), lines, "python")
    ok = [
        i
        for i, k in enumerate(kinds)
        if k in ("code", "control", "jump")
        and not facts.string[i]
        and not facts.comment[i]
        and i > 0
    ]
    if not ok:
        return None
    order = [kind] if kind else rng.sample(MUTATION_KINDS, len(MUTATION_KINDS))
    for k in order:
        if k == "deleted_line":
            dels = [
                i
                for i in ok
                if i + 1 < len(lines)
                and lines[i + 1].strip()
                and kinds[i] == "code"
                and indent_of(lines[i + 1]) == indent_of(lines[i])
                and indent_of(lines[i - 1]) == indent_of(lines[i])
            ]
            if not dels:
                continue
            i = rng.choice(dels)
            out = list(lines[:i]) + list(lines[i + 1 :])
            return out, Mutation(k, i, lines[i], "")
        fn = MUTATORS[k]
        for i in rng.sample(ok, len(ok)):
            ctx = lines[max(0, i - 15) : i + 15]
            new = fn(lines[i], ctx, rng)
            if new is not None and ff.ws_normal(new) != ff.ws_normal(lines[i]):
                out = list(lines)
                out[i] = new
                return out, Mutation(k, i, lines[i], new)
    return None


def indent_of(s: str) -> int:
    return len(s) - len(s.lstrip())
