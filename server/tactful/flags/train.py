"""Training data and training for the line-flag classifiers (``models/flag/``).

Owns the single-line mutation generator (operator swap, off-by-one, wrong variable, wrong
constant, negated condition, swapped arguments, deleted line), the snippets it mutates (real
source files of this Python installation: the standard library and installed packages, never
tactful itself), the ConDefects loader and its dev / held-out split (by task), the dataset build
(run the real flagging pipeline with the heuristic first stage and record every considered
line's features) and the LightGBM training that writes text model files, ``meta.json`` and
``MODEL_CARD.md``. Intermediate datasets are cached under ``.cache/flag/`` (git-ignored).

Reproduce the shipped classifier (the datasets are built with different first-stage extras, so
it takes three builds; docs/flags.md and the model card list the same commands)::

    python -m tactful.flags.train build --dev 0 --dev-mutations 0
    python -m tactful.flags.train build --mutations 0 --dev 775 --dev-mutations 0 --regen-extra 2
    python -m tactful.flags.train build --mutations 0 --dev 0 --dev-mutations 110 --regen-extra 2
    python -m tactful.flags.train train --with-dev --cv 5 --rounds 150 --params '{"num_leaves": 7}'

``all`` builds the default sizes in one go and trains (a quick, smaller recipe).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import re
import shlex
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tactful.flags import features as ff

REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / ".cache" / "flag"
#: ConDefects (development set), from the project's shared data folder beside the checkout;
#: ``TACTFUL_CONDEFECTS`` overrides it.
CONDEFECTS = Path(
    os.environ.get(
        "TACTFUL_CONDEFECTS",
        Path(__file__).resolve().parents[4]
        / "shared"
        / "data"
        / "condefects"
        / "condefects_python.jsonl.gz",
    )
)
SEED = 20260415

# --- mutations -----------------------------------------------------------------------------------
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
                and _indent(lines[i + 1]) == _indent(lines[i])
                and _indent(lines[i - 1]) == _indent(lines[i])
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


def _indent(s: str) -> int:
    return len(s) - len(s.lstrip())


# --- sources -------------------------------------------------------------------------------------
def source_files() -> list[Path]:
    """Python files of the standard library and installed packages (never tactful's own)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    skip = (
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "tactful",
        "site-packages",
        "__pycache__",
        "_vendor",
        "vendor",
    )
    out = [
        p
        for p in stdlib.glob("**/*.py")
        if not any(part in skip for part in p.relative_to(stdlib).parts)
    ]
    for pkg in (
        "attrs",
        "cattrs",
        "platformdirs",
        "diskcache",
        "pygls",
        "lsprotocol",
        "psutil",
        "packaging",
        "idna",
        "certifi",
        "yaml",
        "jinja2",
        "markupsafe",
        "click",
        "pluggy",
        "_pytest",
        "filelock",
        "fsspec",
    ):
        d = site / pkg
        if d.is_dir():
            out += [p for p in d.glob("**/*.py") if "tests" not in p.parts]
    return sorted(out)


def snippets(
    rng: random.Random, count: int, min_lines: int = 10, max_lines: int = 45
) -> Iterator[tuple[str, list[str]]]:
    """(name, lines) of function-sized chunks of real source files, dedented."""
    files = source_files()
    rng.shuffle(files)
    made = 0
    for path in files:
        if made >= count:
            return
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            continue
        starts = [i for i, ln in enumerate(lines) if re.match(r"^( {0,4})def \w+\(", ln)]
        if not starts:
            continue
        s = rng.choice(starts)
        ind = _indent(lines[s])
        e = s + 1
        while (
            e < len(lines)
            and e - s < max_lines
            and (not lines[e].strip() or _indent(lines[e]) > ind)
        ):
            e += 1
        chunk = [ln[ind:] if ln[:ind].strip() == "" else ln for ln in lines[s:e]]
        while chunk and not chunk[-1].strip():
            chunk.pop()
        code = sum(1 for ln in chunk if ff.rule_kind(ln) in ("code", "control", "jump"))
        if len(chunk) < min_lines or code < 5 or any(len(ln) > 200 for ln in chunk):
            continue
        made += 1
        yield f"{path.name}:{s + 1}", chunk


def condefects(split: str, max_lines: int = 40, limit: int | None = None) -> list[dict[str, Any]]:
    """Clean single-fault ConDefects Python programs of ``split`` ('dev' or 'heldout'), by id.

    The split is by task (md5 of the task name, even = dev), so no task is in both."""
    with gzip.open(CONDEFECTS, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    out = []
    for r in sorted(rows, key=lambda r: r["id"]):
        if (
            r["n_lines"] > max_lines
            or r["diff_lines"] != r["fault_lines"]
            or len(r["fault_lines"]) != 1
        ):
            continue
        even = int(hashlib.md5(r["task"].encode()).hexdigest(), 16) % 2 == 0
        if (split == "dev") == even:
            out.append(r)
    return out[:limit] if limit else out


# --- dataset -------------------------------------------------------------------------------------
def build(
    backend: Any,
    name: str,
    samples: Sequence[tuple[str, str, list[int]]],
    regen_extra: int = 4,
    also: Any = None,
) -> Path:
    """Run the pipeline (heuristic first stage, bug lines always regenerated) over ``samples``
    ``(id, text, bug_lines_0based)`` and append one JSON line per sample to .cache/flag/NAME.jsonl
    (samples already there are skipped, so an interrupted build resumes).

    ``also(id, text)``: more lines to regenerate (the top lines of the prior classifier, so that
    the lines a trained first stage picks were regenerated too)."""
    from tactful.flags.job import FlagJob, FlagModel

    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"{name}.jsonl"
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            try:
                done.add(json.loads(line)["id"])
            except (ValueError, KeyError):
                continue
    heuristic = FlagModel()
    # The features depend slightly on the model's dtype (bfloat16 on a CPU with AVX512-BF16).
    dtype = str(getattr(getattr(backend, "model", None), "dtype", "unknown")).removeprefix("torch.")
    t0 = time.time()
    with out.open("a") as fh:
        for k, (sid, text, bugs) in enumerate(samples):
            if sid in done:
                continue
            extra = list(also(sid, text)) if also is not None else []
            job = FlagJob(
                text,
                "python",
                model=heuristic,
                regen_extra=regen_extra,
                force=sorted(set(bugs) | set(extra)),
                key="train",
            )
            for unit in job.steps():
                unit(backend)
            res = job.result()
            rows: list[dict[str, Any]] = []
            for i, cheap, regen, p1 in job.rows():
                row = {"i": i, "y": int(i in bugs), "cheap": cheap, "regen": regen, "p1": p1}
                if regen is not None:  # the regenerated line ("s"), to study what it proposed
                    row["s"] = job.info[i].suggestion
                rows.append(row)
            record = {
                "id": sid,
                "bugs": bugs,
                "lines": res.lines,
                "rows": rows,
                "text": text,
                "dtype": dtype,
            }
            if extra:
                record["also"] = extra
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            print(
                f"[{name}] {k + 1}/{len(samples)} {sid} ({time.time() - t0:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    return out


def set_threads(n: int) -> None:
    """Use ``n`` torch threads. One is the default for batch jobs: on a shared CPU, two threads
    per process make every small decoding op wait for a descheduled thread (measured here: 10x
    slower regeneration under load)."""
    import torch

    torch.set_num_threads(max(1, n))


def mutation_samples(
    count: int, seed: int = SEED, max_lines: int = 30
) -> list[tuple[str, str, list[int]]]:
    rng = random.Random(seed)
    out = []
    for name, lines in snippets(rng, count * 2, max_lines=max_lines):
        m = mutate(lines, rng)
        if m is None:
            continue
        new, mut = m
        out.append((f"{name}:{mut.kind}", "\n".join(new) + "\n", [mut.line]))
        if len(out) >= count:
            break
    return out


def condefects_mutation_samples(count: int, seed: int = SEED) -> list[tuple[str, str, list[int]]]:
    """Mutations of the *accepted* programs of the ConDefects dev tasks (real code in the domain
    of the benchmark; the held-out tasks are never touched)."""
    rng = random.Random(seed + 1)
    rows = condefects("dev")
    rng.shuffle(rows)
    out = []
    for r in rows:
        lines = r["correct_code"].replace("\r\n", "\n").split("\n")
        m = mutate(lines, rng)
        if m is None:
            continue
        new, mut = m
        out.append((f"{r['id']}:correct:{mut.kind}", "\n".join(new), [mut.line]))
        if len(out) >= count:
            break
    return out


def condefects_samples(split: str, limit: int) -> list[tuple[str, str, list[int]]]:
    return [
        (r["id"], r["faulty_code"].replace("\r\n", "\n"), [r["fault_lines"][0] - 1])
        for r in condefects(split, limit=limit)
    ]


def load_dataset(name: str) -> list[dict[str, Any]]:
    """The recorded samples of .cache/flag/NAME.jsonl, with the line-text features of every row
    recomputed from the recorded text by the flagger's own :func:`flag_features.text_features`
    (rows of an older build lack them, or hold those of an older feature list) and the ``prior``
    feature left NaN (see :func:`with_priors`)."""
    path = CACHE / f"{name}.jsonl"
    out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    n_pass = len(ff.PASS_FEATURES)
    for s in out:
        if "text" not in s:
            raise ValueError(f"{path}: sample {s['id']} has no recorded text; rebuild the dataset")
        lines = ff.document_lines(s["text"])
        context = ff.context_text_features(lines)
        for r in s["rows"]:
            i = r["i"]
            r["cheap"] = r["cheap"][:n_pass] + ff.text_features(lines[i]) + context[i] + [math.nan]
    return out


def task_of(sample_id: str) -> str:
    """The ConDefects task of a sample id (``abc221_f/Python/40898300[:correct:kind]``), or the
    id itself for a snippet of the standard library."""
    return sample_id.split("/", 1)[0] if "/" in sample_id else sample_id


# --- the prior: line text and place alone, trained on every real dev bug -------------------------
#: Dev programs of up to this many lines train the prior (it needs no model pass, so all of them).
PRIOR_MAX_LINES = 80
PRIOR_ROUNDS = 150
#: Folds of the dev tasks for cross-fitting the prior (and for ``--cv``).
PRIOR_FOLDS = 5


def text_rows(text: str) -> tuple[list[int], list[list[float]]]:
    """(considered lines, their cheap feature rows without model output) of a document, as the
    flagger computes them for a one-window document; enough for ``ff.PRIOR_INPUTS``."""
    from tactful.flags.job import MAX_LINE_CHARS, NOT_CONSIDERED

    lines = ff.document_lines(text)
    facts = ff.syntax_facts("\n".join(lines), lines, "python")
    kinds = ff.line_kinds(lines, facts)
    empty: list[list[float]] = [[] for _ in lines]
    rows = ff.cheap_features(lines, kinds, facts, empty, empty)
    keep = [
        i
        for i, k in enumerate(kinds)
        if k not in NOT_CONSIDERED and len(lines[i]) <= MAX_LINE_CHARS
    ]
    return keep, [rows[i] for i in keep]


def prior_corpus() -> list[tuple[str, list[list[float]], list[int]]]:
    """(task, rows, labels) of every clean single-fault dev program of at most
    ``PRIOR_MAX_LINES`` lines (never a held-out task)."""
    out = []
    for r in condefects("dev", max_lines=PRIOR_MAX_LINES):
        keep, rows = text_rows(r["faulty_code"].replace("\r\n", "\n"))
        bug = r["fault_lines"][0] - 1
        out.append((r["task"], rows, [int(i == bug) for i in keep]))
    return out


def bench_ids(split: str = "dev", min_lines: int = 10) -> set[str]:
    """Ids of the programs ``tactful bench flag`` counts by default (at least ``min_lines``
    lines: a shorter file gets no flag at 15 %)."""
    return {r["id"] for r in condefects(split) if r["n_lines"] >= min_lines}


def dev_folds(k: int = PRIOR_FOLDS) -> dict[str, int]:
    """Fold of every dev task (all of them, so that the prior's folds and ``--cv``'s agree)."""
    tasks = sorted({r["task"] for r in condefects("dev", max_lines=PRIOR_MAX_LINES)})
    random.Random(SEED).shuffle(tasks)
    return {t: j % k for j, t in enumerate(tasks)}


def fit_prior(
    corpus: Sequence[tuple[str, list[list[float]], list[int]]],
    folds: dict[str, int],
    exclude: set[int],
    rounds: int = PRIOR_ROUNDS,
) -> Any:
    """The prior classifier trained on the corpus programs whose task is in no ``exclude`` fold."""
    import lightgbm as lgb
    import numpy as np

    idx = [ff.CHEAP_FEATURES.index(n) for n in ff.PRIOR_INPUTS]
    x, y = [], []
    for task, rows, labels in corpus:
        if folds.get(task) in exclude:
            continue
        x += [[r[i] for i in idx] for r in rows]
        y += labels
    data = lgb.Dataset(
        np.asarray(x, dtype=float),
        np.asarray(y),
        feature_name=list(ff.PRIOR_INPUTS),
        categorical_feature=[ff.PRIOR_INPUTS.index("kind")],
    )
    return lgb.train(PARAMS, data, rounds)


def with_priors(samples: Sequence[dict[str, Any]], prior_of: Any) -> list[dict[str, Any]]:
    """Copies of ``samples`` whose rows' ``prior`` feature comes from ``prior_of(sample)`` (a
    prior booster, or None for NaN), scored by the flagger's own :func:`tactful.flags.job.prior_scores`."""
    from tactful.flags.job import prior_scores

    k = ff.CHEAP_FEATURES.index("prior")
    out = []
    for s in samples:
        booster = prior_of(s)
        rows = [dict(r, cheap=list(r["cheap"])) for r in s["rows"]]
        if booster is not None and rows:
            for r, p in zip(rows, prior_scores(booster, [r["cheap"] for r in rows]), strict=True):
                r["cheap"][k] = p
        out.append(dict(s, rows=rows))
    return out


def cross_fitted(
    samples: Sequence[dict[str, Any]],
    folds: dict[str, int],
    priors: dict[frozenset[int], Any],
    exclude: set[int],
) -> list[dict[str, Any]]:
    """``samples`` with out-of-fold priors: a sample of a dev task in fold g gets the prior
    trained without folds ``exclude | {g}``; any other sample (a library snippet) the prior
    trained without ``exclude``. ``priors`` caches the boosters by excluded folds."""

    def prior_of(s: dict[str, Any]) -> Any:
        g = folds.get(task_of(s["id"]))
        key = frozenset(exclude | ({g} if g is not None else set()))
        return priors.get(key)

    return with_priors(samples, prior_of)


def prior_top(
    corpus_folds: dict[str, int], priors: dict[frozenset[int], Any], extra: int = 2
) -> Any:
    """For the build: ``also(id, text)`` giving the lines an out-of-fold prior ranks highest
    (``max_flags + extra`` of them)."""
    from tactful.flags.job import prior_scores

    def also(sid: str, text: str) -> list[int]:
        g = corpus_folds.get(task_of(sid))
        booster = priors.get(frozenset({g} if g is not None else set()))
        if booster is None:
            return []
        keep, rows = text_rows(text)
        if not keep:
            return []
        n = len(ff.document_lines(text))
        k = math.floor(0.15 * n + 1e-9) + extra
        p = prior_scores(booster, rows)
        return sorted(keep[j] for j in sorted(range(len(keep)), key=lambda j: -p[j])[:k])

    return also


# --- training ------------------------------------------------------------------------------------
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": SEED,
    "num_threads": 1,
    "deterministic": True,
}
ROUNDS = 250


def _matrix(
    samples: Sequence[dict[str, Any]], regen: bool, weights: Sequence[float] | None = None
) -> tuple[list[list[float]], list[int], list[float]]:
    x, y, w = [], [], []
    for k, s in enumerate(samples):
        for r in s["rows"]:
            if regen and r["regen"] is None:
                continue
            x.append(r["cheap"] + (r["regen"] if regen else []))
            y.append(r["y"])
            w.append(weights[k] if weights is not None else 1.0)
    return x, y, w


def fit(
    samples: Sequence[dict[str, Any]],
    rounds: int = ROUNDS,
    params: dict[str, Any] | None = None,
    weights: Sequence[float] | None = None,
    drop: Sequence[str] = (),
) -> tuple[Any, Any]:
    """Train the two LightGBM classifiers on dataset samples.

    ``weights``: one per sample, given to each of its rows. ``drop``: features hidden from both
    classifiers (set to NaN; for ablations only, never for a shipped model)."""
    import lightgbm as lgb
    import numpy as np

    p = {**PARAMS, **(params or {})}
    kind = ff.CHEAP_FEATURES.index("kind")
    boosters = []
    for regen, names in ((False, ff.CHEAP_FEATURES), (True, ff.ALL_FEATURES)):
        x, y, w = _matrix(samples, regen, weights)
        xa = np.asarray(x, dtype=float)
        for name in drop:
            if name in names:  # a regeneration feature is not among the first stage's
                xa[:, names.index(name)] = np.nan
        data = lgb.Dataset(
            xa,
            np.asarray(y),
            weight=np.asarray(w, dtype=float),
            feature_name=list(names),
            categorical_feature=[kind],
        )
        boosters.append(lgb.train(p, data, rounds))
    return boosters[0], boosters[1]


class _Masked:
    """A model whose inputs have ``drop`` features set to NaN (the ablation of :func:`fit`)."""

    def __init__(self, model: Any, drop: Sequence[str]) -> None:
        self.model = model
        self.cheap = [ff.CHEAP_FEATURES.index(n) for n in drop if n in ff.CHEAP_FEATURES]
        self.all = [ff.ALL_FEATURES.index(n) for n in drop]

    def stage1(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return list(self.model.stage1([_mask(r, self.cheap) for r in rows]))

    def final(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return list(self.model.final([_mask(r, self.all) for r in rows]))


def _mask(row: Sequence[float], idx: Sequence[int]) -> list[float]:
    out = list(row)
    for i in idx:
        out[i] = math.nan
    return out


def simulate(
    samples: Sequence[dict[str, Any]],
    model: Any,
    budget: float = 0.15,
    extra: int | None = None,
    min_score: float = 0.05,
    regen_min: float = 0.0,
) -> dict[str, float]:
    """Top-1, top-3 and recall at the budget of the two-stage ranking on recorded samples, as
    ``tactful bench flag`` counts them, with the exact expectation of a random ranking.

    The first stage picks ``max_flags + extra`` lines; of those, the ones the build regenerated
    get the final score (a pick the build did not regenerate is counted in ``missing`` and ranks
    by the first stage, below them). Flags are the regenerated lines whose regeneration differs
    from the written line and is not empty, best first, at most ``max_flags``; the ranking for
    top-1/top-3 is the flags, then the other regenerated lines, then the rest by the first stage.
    ``recall_min_score`` and ``share_min_score``: the recall and the share of lines flagged when
    flags scoring below ``min_score`` are not shown (the editor's ``flags.minScore``).
    ``regen_min``: picks whose first-stage score is below it are not regenerated (a threshold
    tried for the flagger and not shipped, see docs/benchmarks.md); ``regen_per_100``: the
    regenerations per 100 lines.
    """
    from tactful.flags.job import REGEN_EXTRA

    extra = REGEN_EXTRA if extra is None else extra
    i_exact = len(ff.CHEAP_FEATURES) + ff.REGEN_FEATURES.index("exact_ws")
    i_empty = len(ff.CHEAP_FEATURES) + ff.REGEN_FEATURES.index("gen_empty")
    hits1 = hits3 = hitb = 0
    rand1 = rand3 = randb = 0.0
    missing = picked = 0
    hit_ms = share_ms = 0.0
    lines = 0
    for s in samples:
        rows = s["rows"]
        if not rows:
            continue
        max_flags = math.floor(budget * s["lines"] + 1e-9)
        n_regen = min(len(rows), max_flags + extra) if max_flags else 0
        p1 = model.stage1([r["cheap"] for r in rows])
        order = sorted(range(len(rows)), key=lambda j: -p1[j])
        picks = [j for j in order[:n_regen] if p1[j] >= regen_min]
        chosen = [j for j in picks if rows[j]["regen"] is not None]
        picked += len(picks)
        missing += len(picks) - len(chosen)
        lines += s["lines"]
        full = [rows[j]["cheap"] + rows[j]["regen"] for j in chosen]
        pf = model.final(full)
        by_score = sorted(range(len(chosen)), key=lambda t: -pf[t])
        eligible = [t for t in by_score if not full[t][i_exact] and not full[t][i_empty]]
        flags = [rows[chosen[t]]["i"] for t in eligible[:max_flags]]
        ranked = flags + [
            rows[chosen[t]]["i"] for t in by_score if rows[chosen[t]]["i"] not in flags
        ]
        ranked += [rows[j]["i"] for j in order if rows[j]["i"] not in ranked]
        bugs = set(s["bugs"])
        hits1 += bool(bugs & set(ranked[:1]))
        hits3 += bool(bugs & set(ranked[:3]))
        hitb += bool(bugs & set(flags))
        shown = [rows[chosen[t]]["i"] for t in eligible[:max_flags] if pf[t] >= min_score]
        hit_ms += bool(bugs & set(shown))
        share_ms += len(shown) / max(1, s["lines"])
        c = len(rows)
        if bugs & {r["i"] for r in rows}:
            rand1 += min(1, c) / c
            rand3 += min(3, c) / c
            randb += min(max_flags, c) / c
    n = max(1, len(samples))
    return {
        "n": len(samples),
        "top1": hits1 / n,
        "top3": hits3 / n,
        "recall_at_budget": hitb / n,
        "random_top1": rand1 / n,
        "random_top3": rand3 / n,
        "random_recall": randb / n,
        "missing_picks": missing / max(1, picked),
        "recall_min_score": hit_ms / n,
        "share_min_score": share_ms / n,
        "regen_per_100": 100 * picked / max(1, lines),
    }


def _pool(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Figures of several :func:`simulate` results over all their programs together."""
    n = sum(p["n"] for p in parts)
    out: dict[str, float] = {"n": n}
    for key in parts[0]:
        if key != "n":
            out[key] = sum(p[key] * p["n"] for p in parts) / max(1, n)
    return out


def _line(name: str, m: dict[str, float]) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    return (
        f"{name}: n={m['n']} recall@15% {m['recall_at_budget']:.3f} "
        f"(random {m['random_recall']:.3f}, {ratio(m['recall_at_budget'], m['random_recall'])}) "
        f"top-1 {m['top1']:.3f} (random {m['random_top1']:.3f}, "
        f"{ratio(m['top1'], m['random_top1'])}) top-3 {m['top3']:.3f} "
        f"(random {m['random_top3']:.3f}, {ratio(m['top3'], m['random_top3'])}) "
        f"missing picks {m['missing_picks']:.2f}; at minScore 0.05: recall "
        f"{m['recall_min_score']:.3f}, lines flagged {m['share_min_score']:.3f}; "
        f"regenerated per 100 lines {m['regen_per_100']:.1f}"
    )


def training_weights(
    samples: Sequence[dict[str, Any]], real: set[str], mut_weight: float, dev_weight: float
) -> list[float]:
    """One weight per sample: ``dev_weight`` for the real bugs (ids in ``real``), ``mut_weight``
    for the mutations."""
    return [dev_weight if s["id"] in real else mut_weight for s in samples]


def cross_validate(
    dev: Sequence[dict[str, Any]],
    others: Sequence[dict[str, Any]],
    k: int,
    *,
    folds: dict[str, int] | None = None,
    corpus: Sequence[tuple[str, list[list[float]], list[int]]] | None = None,
    rounds: int = ROUNDS,
    params: dict[str, Any] | None = None,
    mut_weight: float = 1.0,
    dev_weight: float = 1.0,
    drop: Sequence[str] = (),
    scored: set[str] | None = None,
    regen_mins: Sequence[float] = (),
    log: Any = sys.stdout,
) -> dict[str, float]:
    """K-fold cross-validation on the real ConDefects dev bugs, folds by task (``folds``, default
    :func:`dev_folds`): each fold's classifier is trained on the other folds' real bugs plus
    ``others`` (the mutations), leaving out every mutation of a test-fold task (the accepted
    program of a task is the fix of its faulty one). With a prior ``corpus``, the prior is
    cross-fitted inside the training folds and never sees a test-fold task. ``scored``: the ids
    of the dev programs the figures count (default all; see :func:`bench_ids`). Prints each fold
    and the pooled figures; returns the pooled ones. ``regen_mins``: also print the pooled figures
    with each of these first-stage thresholds for regeneration (see :func:`simulate`)."""
    from tactful.flags.job import FlagModel

    folds = dev_folds(k) if folds is None else folds
    real = {s["id"] for s in dev}
    parts = []
    swept: dict[float, list[dict[str, float]]] = {t: [] for t in regen_mins}
    for f in range(k):
        test = [
            s
            for s in dev
            if folds.get(task_of(s["id"])) == f and (scored is None or s["id"] in scored)
        ]
        train = [s for s in list(dev) + list(others) if folds.get(task_of(s["id"])) != f]
        if corpus is not None:
            excluded: list[set[int]] = [{f}] + [{f, g} for g in range(k) if g != f]
            priors = {frozenset(e): fit_prior(corpus, folds, e) for e in excluded}
            test = cross_fitted(test, folds, priors, {f})
            train = cross_fitted(train, folds, priors, {f})
        weights = training_weights(train, real, mut_weight, dev_weight)
        s1, f1 = fit(train, rounds, params, weights, drop)
        model: Any = FlagModel(s1, f1, {})
        if drop:
            model = _Masked(model, drop)
        m = simulate(test, model)
        parts.append(m)
        for t in regen_mins:
            swept[t].append(simulate(test, model, regen_min=t))
        print(_line(f"  fold {f + 1}/{k}", m), file=log, flush=True)
    pooled = _pool(parts)
    print(_line(f"  pooled ({k} folds by task)", pooled), file=log, flush=True)
    for t, ms in swept.items():
        print(_line(f"  pooled, regenerating only at stage 1 >= {t:g}", _pool(ms)), file=log)
    return pooled


def write_model(
    stage1: Any, final: Any, folder: Path, card: dict[str, Any], prior: Any = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage1.txt").write_text(stage1.model_to_string())
    (folder / "final.txt").write_text(final.model_to_string())
    if prior is not None:
        (folder / "prior.txt").write_text(prior.model_to_string())
    elif (folder / "prior.txt").exists():
        (folder / "prior.txt").unlink()
    meta = {
        "name": card.get("name", "flag-lgbm"),
        "format": "lightgbm-text",
        "stage1": "stage1.txt",
        "final": "final.txt",
        "cheap_features": list(ff.CHEAP_FEATURES),
        "all_features": list(ff.ALL_FEATURES),
        "kinds": list(ff.KINDS),
        "prior": "prior.txt" if prior is not None else None,
        "prior_inputs": list(ff.PRIOR_INPUTS) if prior is not None else None,
        "trained_on": card.get("trained_on"),
        "dev_metrics": card.get("dev_metrics"),
        "recipe": card.get("recipe"),
        "created": time.strftime("%Y-%m-%d"),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(model_card(meta, stage1, final, prior))


def model_card(meta: dict[str, Any], stage1: Any, final: Any, prior: Any = None) -> str:
    """The model card: what the classifiers are, what they were trained on, how they did."""

    def importance(booster: Any) -> str:
        names = booster.feature_name()
        gains = booster.feature_importance(importance_type="gain")
        ranked = sorted(zip(names, gains, strict=True), key=lambda t: -t[1])[:8]
        total = sum(gains) or 1.0
        return ", ".join(f"`{n}` {100 * g / total:.0f} %" for n, g in ranked)

    metrics = meta.get("dev_metrics") or {}

    def cell(m: dict[str, float], key: str, rand: str) -> str:
        return f"{m[key]:.3f} ({m[rand]:.3f})" if rand in m else f"{m[key]:.3f}"

    rows = "\n".join(
        f"| {name} | {m['n']} | {cell(m, 'top1', 'random_top1')} | "
        f"{cell(m, 'top3', 'random_top3')} | {cell(m, 'recall_at_budget', 'random_recall')} |"
        for name, m in metrics.items()
    )
    recipe = meta.get("recipe") or {}
    prior_row = (
        f"| `{meta['prior']}` | prior: how likely a line of this text and place is the bug "
        f"(the cheap feature `prior`) | {len(meta['prior_inputs'])} features of the line's text "
        "and place, no model output |\n"
        if prior is not None
        else ""
    )
    prior_imp = f"\n* prior: {importance(prior)}" if prior is not None else ""
    return f"""# Model card: tactful line-flag classifiers (`{meta["name"]}`)

LightGBM binary classifiers stored as LightGBM **text** model files (no pickle), read by
`tactful.flags.job.FlagModel.load` with `lightgbm.Booster(model_str=...)`.

| file | role | input |
|---|---|---|
{prior_row}| `{meta["stage1"]}` | first stage: which lines to regenerate | {len(meta["cheap_features"])} cheap features: the teacher-forced pass, the line's text and place{", the prior" if prior is not None else ""} |
| `{meta["final"]}` | decision: score of a regenerated line | the same plus {len(meta["all_features"]) - len(meta["cheap_features"])} comparison features |
| `meta.json` | feature names and order, file names, training summary | |

Output: P(line holds the bug). Flags are the highest-scoring regenerated lines, at most
`flags.budget` of a file's lines, whose regeneration differs from the written line.

## Training data

{meta.get("trained_on")}.

* Real bugs: faulty submissions of ConDefects Python whose task is in the dev split (md5 of the
  task name even), clean single-fault programs of at most 40 lines, first by id; the label is the
  line the fix changed. No held-out task was used for training, tuning or feature selection.
* Mutations: single-line mutations (operator swap, off-by-one, wrong variable, wrong constant,
  negated condition, swapped arguments, deleted line) injected by `tactful.flags.train.mutate` into
  real source files on the build machine: function-sized snippets of the Python standard library
  and installed pure-Python packages (never tactful's own code), and the accepted programs of the
  ConDefects tasks of the dev split (never a held-out task).

Training: LightGBM, {recipe.get("rounds", ROUNDS)} rounds, parameters `{json.dumps({**PARAMS, **(recipe.get("params") or {})}, sort_keys=True)}`;
row weights: real bugs {recipe.get("dev_weight", 1.0)}, mutations {recipe.get("mut_weight", 1.0)}.
Features computed with the embedded SmolLM2-135M-Instruct on CPU, weights in {" and ".join(recipe.get("feature_dtypes") or ["a dtype not recorded"])}
(the server runs it in bfloat16 where the CPU has AVX512-BF16 or AMX, float32 otherwise). Python only: other languages get the same features (line kinds from
tree-sitter or line rules) but were not in the training data.

Reproduce: build the datasets (cached in `.cache/flag/`, resumable): `python -m tactful.flags.train
build --dev 0 --dev-mutations 0` (the library mutations, first stage: the heuristic plus 4 lines),
`python -m tactful.flags.train build --mutations 0 --dev 775 --dev-mutations 0 --regen-extra 2` and
`python -m tactful.flags.train build --mutations 0 --dev 0 --dev-mutations 110 --regen-extra 2`
(the real dev bugs and the mutated accepted dev programs, first stage: the heuristic plus 2 lines
and the out-of-fold prior's top lines), then train: `{recipe.get("command", "python -m tactful.flags.train train --with-dev --cv 5")}`.

## Development results (recorded rows, two-stage ranking simulated)

Random ranking of the same lines in brackets (exact expectation). The cross-validated row is the
honest one for real bugs; a row marked "in training" was seen by the classifier.

| set | programs | top-1 | top-3 | recall at 15 % |
|---|---|---|---|---|
{rows}

The held-out figures of the real pipeline are in `docs/benchmarks.md` (`tactful bench flag`).

## Most useful features (share of total gain)

* first stage: {importance(stage1)}
* decision: {importance(final)}{prior_imp}

## Limits

* Real bugs that span lines or are missing code are harder; the real bugs in training are short
  AtCoder programs, not library code.
* Features depend on the model (and slightly on its dtype and decoding path): retrain after
  changing the default model. `FlagModel.load` refuses a classifier whose feature list differs
  from the code's.
* Rebuilding reproduces the recipe and sizes, not bit-identical files.
* Created {meta["created"]}.
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tactful.flags.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument("step", choices=["build", "train", "all"])
    ap.add_argument(
        "--mutations",
        type=int,
        default=160,
        help="mutated snippets to build (default 160; 0: none)",
    )
    ap.add_argument(
        "--dev", type=int, default=25, help="ConDefects dev programs to build (default 25)"
    )
    ap.add_argument(
        "--dev-mutations",
        type=int,
        default=110,
        help="mutated accepted programs of ConDefects dev tasks to build (default 110)",
    )
    ap.add_argument("--with-dev", action="store_true", help="also train on the ConDefects dev rows")
    ap.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="K-fold cross-validation on the ConDefects dev bugs, folds by task: print each fold "
        "and the pooled figures (trained as --with-dev would, on the other folds)",
    )
    ap.add_argument(
        "--cv-only", action="store_true", help="with --cv: stop after the cross-validation"
    )
    ap.add_argument(
        "--dev-weight", type=float, default=1.0, help="weight of a real dev bug's rows (default 1)"
    )
    ap.add_argument(
        "--mut-weight", type=float, default=1.0, help="weight of a mutation's rows (default 1)"
    )
    ap.add_argument("--no-mutations", action="store_true", help="train on the real dev bugs alone")
    ap.add_argument(
        "--regen-extra",
        type=int,
        default=4,
        help="build: regenerate this many lines beyond the budget by the heuristic (default 4)",
    )
    ap.add_argument(
        "--no-prior",
        action="store_true",
        help="no prior classifier (build: regenerate the heuristic's lines only; train: no prior)",
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"boosting rounds ({ROUNDS})")
    ap.add_argument(
        "--params", default="{}", help="LightGBM parameters over the defaults, as a JSON object"
    )
    ap.add_argument(
        "--drop",
        default="",
        help="with --cv-only: comma-separated features hidden from the classifiers (ablation)",
    )
    ap.add_argument(
        "--regen-min",
        default="",
        help="with --cv: comma-separated first-stage thresholds below which a line is not "
        "regenerated; prints the pooled figures for each",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: see set_threads)"
    )
    ap.add_argument(
        "--out", default=str(REPO / "models" / "flag"), help="where to write the classifier"
    )
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw_argv)
    if args.step in ("build", "all"):
        from tactful import paths
        from tactful.backend.hf import TransformersBackend

        backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
        set_threads(args.threads)
        if args.mutations:
            build(backend, "mutations", mutation_samples(args.mutations), args.regen_extra)
        also = None
        if (args.dev or args.dev_mutations) and not args.no_prior:
            # Also regenerate the lines an out-of-fold prior ranks highest, so that the data
            # hold the lines a trained first stage picks (not only the heuristic's).
            bfolds, bcorpus = dev_folds(), prior_corpus()
            bpriors = {frozenset({g}): fit_prior(bcorpus, bfolds, {g}) for g in range(PRIOR_FOLDS)}
            also = prior_top(bfolds, bpriors)
        if args.dev:
            build(
                backend,
                "condefects-dev",
                condefects_samples("dev", args.dev),
                args.regen_extra,
                also,
            )
        if args.dev_mutations:
            build(
                backend,
                "condefects-dev-mutations",
                condefects_mutation_samples(args.dev_mutations),
                args.regen_extra,
                also,
            )
    if args.step in ("train", "all"):
        from tactful.flags.job import FlagModel

        params = json.loads(args.params)
        drop = [d for d in args.drop.split(",") if d]
        if drop and not args.cv_only:
            ap.error("--drop is for ablations: use it with --cv-only")
        mut = load_dataset("mutations")
        dev = load_dataset("condefects-dev") if (CACHE / "condefects-dev.jsonl").exists() else []
        # An honest figure on mutations: train on one half of the snippets, test on the other.
        dmut_path = CACHE / "condefects-dev-mutations.jsonl"
        n_std = len(mut)
        mut += load_dataset("condefects-dev-mutations") if dmut_path.exists() else []
        n_dev_mut = len(mut) - n_std
        random.Random(SEED).shuffle(mut)
        others = [] if args.no_mutations else mut
        metrics: dict[str, dict[str, float]] = {}
        k = args.cv or PRIOR_FOLDS
        folds = dev_folds(k)
        corpus = None if args.no_prior else prior_corpus()
        if args.cv:
            if not dev:
                ap.error("--cv needs the ConDefects dev dataset (build --dev N)")
            print(
                f"cross-validation: {len(dev)} real dev bugs, {len(others)} mutations, "
                f"rounds {args.rounds}, params {params}, mutation weight {args.mut_weight}, "
                f"dev weight {args.dev_weight}, drop {drop}, "
                f"prior {'none' if corpus is None else f'{len(corpus)} dev programs'}",
                flush=True,
            )
            cv = cross_validate(
                dev,
                others,
                args.cv,
                folds=folds,
                corpus=corpus,
                rounds=args.rounds,
                params=params,
                mut_weight=args.mut_weight,
                dev_weight=args.dev_weight,
                drop=drop,
                scored=bench_ids(),
                regen_mins=[float(t) for t in args.regen_min.split(",") if t.strip()],
            )
            metrics[f"ConDefects dev, {args.cv}-fold CV by task"] = cv
            if args.cv_only:
                return 0
        prior = None
        if corpus is not None:
            # The shipped prior sees every dev program; the training rows get out-of-fold ones.
            priors = {frozenset({g}): fit_prior(corpus, folds, {g}) for g in range(k)}
            priors[frozenset()] = prior = fit_prior(corpus, folds, set())
            mut = cross_fitted(mut, folds, priors, set())
            dev = cross_fitted(dev, folds, priors, set())
            others = [] if args.no_mutations else mut
        half = len(mut) // 2
        s1, f1 = fit(mut[:half], args.rounds, params)
        train = others + (dev if args.with_dev else [])
        weights = training_weights(train, {s["id"] for s in dev}, args.mut_weight, args.dev_weight)
        stage1, final = fit(train, args.rounds, params, weights)
        model = FlagModel(stage1, final, {"name": "flag-lgbm"}, prior)
        metrics["mutations, held-out half"] = simulate(mut[half:], FlagModel(s1, f1, {}))
        metrics["mutations, heuristic"] = simulate(mut, FlagModel())
        n_dev = sum(1 for s in dev if s["rows"])  # a program under 7 lines gets no flag
        if dev:
            seen = " (in training)" if args.with_dev else ""
            scored = bench_ids()
            dev = [s for s in dev if s["id"] in scored]
            metrics[f"ConDefects dev{seen}"] = simulate(dev, model)
            metrics["ConDefects dev, heuristic"] = simulate(dev, FlagModel())
            for extra in (0, 1, 2, 4):
                print(
                    _line(
                        f"ConDefects dev{seen}, regen_extra={extra}",
                        simulate(dev, model, extra=extra),
                    )
                )
        for name, m in metrics.items():
            print(_line(name, m))
        parts = (
            []
            if args.no_mutations
            else [
                f"{n_std} mutated function-sized snippets of the Python standard library and "
                f"installed packages",
                f"{n_dev_mut} mutated accepted programs of ConDefects dev-split tasks",
            ]
        )
        if args.with_dev:
            parts.append(f"{n_dev} real bugs of ConDefects dev-split programs")
        if corpus is not None:
            parts.append(
                f"a prior on the text of {len(corpus)} real bugs of ConDefects dev-split programs "
                f"of up to {PRIOR_MAX_LINES} lines"
            )
        trained_on = " + ".join(parts)
        recipe = {
            "command": " ".join(["python -m tactful.flags.train", *map(shlex.quote, raw_argv)]),
            "rounds": args.rounds,
            "params": params,
            "mut_weight": args.mut_weight,
            "dev_weight": args.dev_weight,
            "feature_dtypes": sorted({str(s.get("dtype", "not recorded")) for s in mut + dev}),
        }
        write_model(
            stage1,
            final,
            Path(args.out),
            {"trained_on": trained_on, "dev_metrics": metrics, "recipe": recipe},
            prior,
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
