"""Training data and training for the line-flag classifiers (``models/flag/``).

Owns the single-line mutation generator (operator swap, off-by-one, wrong variable, wrong
constant, negated condition, swapped arguments, deleted line), the snippets it mutates (real
source files of this Python installation: the standard library and installed packages, never
tactful itself), the ConDefects loader and its dev / held-out split (by task), the dataset build
(run the real flagging pipeline with the heuristic first stage and record every considered
line's features) and the LightGBM training that writes text model files, ``meta.json`` and
``MODEL_CARD.md``. Intermediate datasets are cached under ``.cache/flag/`` (git-ignored).

Reproduce the shipped classifier::

    python -m tactful.flag_train all          # build (resumable) + train + write models/flag/
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
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tactful import flag_features as ff

REPO = Path(__file__).resolve().parent.parent.parent
CACHE = REPO / ".cache" / "flag"
#: ConDefects (development set), from the project's shared data folder beside the checkout;
#: ``TACTFUL_CONDEFECTS`` overrides it.
CONDEFECTS = Path(
    os.environ.get(
        "TACTFUL_CONDEFECTS",
        Path(__file__).resolve().parents[3]
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
    backend: Any, name: str, samples: Sequence[tuple[str, str, list[int]]], regen_extra: int = 4
) -> Path:
    """Run the pipeline (heuristic first stage, bug lines always regenerated) over ``samples``
    ``(id, text, bug_lines_0based)`` and append one JSON line per sample to .cache/flag/NAME.jsonl
    (samples already there are skipped, so an interrupted build resumes)."""
    from tactful.flag import FlagJob, FlagModel

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
    t0 = time.time()
    with out.open("a") as fh:
        for k, (sid, text, bugs) in enumerate(samples):
            if sid in done:
                continue
            job = FlagJob(
                text, "python", model=heuristic, regen_extra=regen_extra, force=bugs, key="train"
            )
            for unit in job.steps():
                unit(backend)
            res = job.result()
            rows = [
                {"i": i, "y": int(i in bugs), "cheap": cheap, "regen": regen, "p1": p1}
                for i, cheap, regen, p1 in job.rows()
            ]
            record = {"id": sid, "bugs": bugs, "lines": res.lines, "rows": rows, "text": text}
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
    path = CACHE / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


def _matrix(samples: Sequence[dict[str, Any]], regen: bool) -> tuple[list[list[float]], list[int]]:
    x, y = [], []
    for s in samples:
        for r in s["rows"]:
            if regen and r["regen"] is None:
                continue
            x.append(r["cheap"] + (r["regen"] if regen else []))
            y.append(r["y"])
    return x, y


def fit(samples: Sequence[dict[str, Any]], rounds: int = ROUNDS) -> tuple[Any, Any]:
    """Train the two LightGBM classifiers on dataset samples."""
    import lightgbm as lgb
    import numpy as np

    kind = ff.CHEAP_FEATURES.index("kind")
    x1, y1 = _matrix(samples, False)
    stage1 = lgb.train(
        PARAMS,
        lgb.Dataset(
            np.asarray(x1, dtype=float),
            np.asarray(y1),
            feature_name=list(ff.CHEAP_FEATURES),
            categorical_feature=[kind],
        ),
        rounds,
    )
    x2, y2 = _matrix(samples, True)
    final = lgb.train(
        PARAMS,
        lgb.Dataset(
            np.asarray(x2, dtype=float),
            np.asarray(y2),
            feature_name=list(ff.ALL_FEATURES),
            categorical_feature=[kind],
        ),
        rounds,
    )
    return stage1, final


def simulate(
    samples: Sequence[dict[str, Any]], model: Any, budget: float = 0.15, extra: int | None = None
) -> dict[str, float]:
    """Top-1, top-3 and recall at the budget of the two-stage ranking on recorded samples
    (lines the first stage picks but the build did not regenerate rank by the first stage)."""
    from tactful.flag import REGEN_EXTRA

    extra = REGEN_EXTRA if extra is None else extra
    hits1 = hits3 = hitb = 0
    for s in samples:
        rows = s["rows"]
        if not rows:
            continue
        max_flags = math.floor(budget * s["lines"] + 1e-9)
        p1 = model.stage1([r["cheap"] for r in rows])
        order = sorted(range(len(rows)), key=lambda j: -p1[j])
        chosen = [j for j in order[: max_flags + extra] if rows[j]["regen"] is not None]
        pf = model.final([rows[j]["cheap"] + rows[j]["regen"] for j in chosen])
        ranked = [
            rows[j]["i"] for _p, j in sorted(zip(pf, chosen, strict=True), key=lambda t: -t[0])
        ]
        ranked += [rows[j]["i"] for j in order if rows[j]["i"] not in ranked]
        bugs = set(s["bugs"])
        hits1 += bool(bugs & set(ranked[:1]))
        hits3 += bool(bugs & set(ranked[:3]))
        hitb += bool(bugs & set(ranked[:max_flags]))
    n = max(1, len(samples))
    return {"n": len(samples), "top1": hits1 / n, "top3": hits3 / n, "recall_at_budget": hitb / n}


def write_model(stage1: Any, final: Any, folder: Path, card: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage1.txt").write_text(stage1.model_to_string())
    (folder / "final.txt").write_text(final.model_to_string())
    meta = {
        "name": card.get("name", "flag-lgbm"),
        "format": "lightgbm-text",
        "stage1": "stage1.txt",
        "final": "final.txt",
        "cheap_features": list(ff.CHEAP_FEATURES),
        "all_features": list(ff.ALL_FEATURES),
        "kinds": list(ff.KINDS),
        "trained_on": card.get("trained_on"),
        "dev_metrics": card.get("dev_metrics"),
        "created": time.strftime("%Y-%m-%d"),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(model_card(meta, stage1, final))


def model_card(meta: dict[str, Any], stage1: Any, final: Any) -> str:
    """The model card: what the classifiers are, what they were trained on, how they did."""

    def importance(booster: Any) -> str:
        names = booster.feature_name()
        gains = booster.feature_importance(importance_type="gain")
        ranked = sorted(zip(names, gains, strict=True), key=lambda t: -t[1])[:8]
        total = sum(gains) or 1.0
        return ", ".join(f"`{n}` {100 * g / total:.0f} %" for n, g in ranked)

    metrics = meta.get("dev_metrics") or {}
    rows = "\n".join(
        f"| {name} | {m['n']} | {m['top1']:.3f} | {m['top3']:.3f} | {m['recall_at_budget']:.3f} |"
        for name, m in metrics.items()
    )
    return f"""# Model card: tactful line-flag classifiers (`{meta["name"]}`)

Two LightGBM binary classifiers stored as LightGBM **text** model files (no pickle), read by
`tactful.flag.FlagModel.load` with `lightgbm.Booster(model_str=...)`.

| file | role | input |
|---|---|---|
| `{meta["stage1"]}` | first stage: which lines to regenerate | {len(meta["cheap_features"])} features from the teacher-forced pass |
| `{meta["final"]}` | decision: score of a regenerated line | the same plus {len(meta["all_features"]) - len(meta["cheap_features"])} comparison features |
| `meta.json` | feature names and order, file names, training summary | |

Output: P(line holds the injected bug). Flags are the highest-scoring regenerated lines, at most
`flags.budget` of a file's lines, whose regeneration differs from the written line.

## Training data

{meta.get("trained_on")}. Single-line mutations (operator swap, off-by-one, wrong variable, wrong
constant, negated condition, swapped arguments, deleted line) injected by `tactful.flag_train.mutate`
into real source files on the build machine: function-sized snippets of the Python standard library
and installed pure-Python packages (never tactful's own code), and the accepted programs of the
ConDefects tasks of the dev split (never a held-out task). Features computed with the embedded
SmolLM2-135M-Instruct (bf16, CPU). Python only: other languages get the same features (line kinds
from tree-sitter or line rules) but were not in the training data.

Reproduce: `python -m tactful.flag_train all` (datasets are cached in `.cache/flag/`).

## Development results (recorded rows, two-stage ranking simulated)

| set | programs | top-1 | top-3 | recall at 15 % |
|---|---|---|---|---|
{rows}

The held-out figures of the real pipeline are in `docs/benchmarks.md` (`tactful bench flag`).

## Most useful features (share of total gain)

* first stage: {importance(stage1)}
* decision: {importance(final)}

## Limits

* Trained on synthetic single-line bugs; real bugs that span lines or are missing code are harder.
* Features depend on the model: retrain (`python -m tactful.flag_train all`) after changing the
  default model. `FlagModel.load` refuses a classifier whose feature list differs from the code's.
* The shipped files come from a build that was interrupted and resumed with changed settings (its
  first 25 snippets used longer snippets and more regenerated lines); `python -m tactful.flag_train
  all` reproduces the recipe and sizes, not bit-identical files.
* Created {meta["created"]}.
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tactful.flag_train", description=__doc__.split("\n")[0]
    )
    ap.add_argument("step", choices=["build", "train", "all"])
    ap.add_argument(
        "--mutations", type=int, default=160, help="mutated snippets to build (default 160)"
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
        "--threads", type=int, default=1, help="torch threads (default 1: see set_threads)"
    )
    ap.add_argument(
        "--out", default=str(REPO / "models" / "flag"), help="where to write the classifier"
    )
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.step in ("build", "all"):
        from tactful import paths
        from tactful.backend.hf import TransformersBackend

        backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
        set_threads(args.threads)
        build(backend, "mutations", mutation_samples(args.mutations))
        if args.dev:
            build(backend, "condefects-dev", condefects_samples("dev", args.dev))
        if args.dev_mutations:
            build(
                backend, "condefects-dev-mutations", condefects_mutation_samples(args.dev_mutations)
            )
    if args.step in ("train", "all"):
        from tactful.flag import FlagModel

        mut = load_dataset("mutations")
        dev = load_dataset("condefects-dev") if (CACHE / "condefects-dev.jsonl").exists() else []
        # An honest figure on mutations: train on one half of the snippets, test on the other.
        dmut_path = CACHE / "condefects-dev-mutations.jsonl"
        n_std = len(mut)
        mut += load_dataset("condefects-dev-mutations") if dmut_path.exists() else []
        n_dev_mut = len(mut) - n_std
        random.Random(SEED).shuffle(mut)
        half = len(mut) // 2
        s1, f1 = fit(mut[:half])
        train = mut + (dev if args.with_dev else [])
        stage1, final = fit(train)
        model = FlagModel(stage1, final, {"name": "flag-lgbm"})
        metrics = {
            "mutations, held-out half": simulate(mut[half:], FlagModel(s1, f1, {})),
            "mutations, heuristic": simulate(mut, FlagModel()),
        }
        if dev:
            metrics["ConDefects dev"] = simulate(dev, model)
            metrics["ConDefects dev, heuristic"] = simulate(dev, FlagModel())
            for extra in (0, 1, 2, 4):
                print(f"ConDefects dev, regen_extra={extra}:", simulate(dev, model, extra=extra))
        print(json.dumps(metrics, indent=2))
        trained_on = (
            f"{n_std} mutated function-sized snippets of the Python standard library and installed "
            f"packages + {n_dev_mut} mutated accepted programs of ConDefects dev-split tasks"
            + (f" + {len(dev)} real ConDefects dev bugs" if args.with_dev else "")
        )
        write_model(
            stage1, final, Path(args.out), {"trained_on": trained_on, "dev_metrics": metrics}
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
