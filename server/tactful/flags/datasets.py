"""Training data of the flag classifiers: the snippets that are mutated (real source files of this
Python installation, never tactful itself), the ConDefects loader and its dev / held-out split
(by task), the dataset build (the real flagging pipeline with the heuristic first stage, every
considered line's features recorded under ``.cache/flag/``), and the prior classifier's data and
fit. Not used at run time.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

from tactful.flags import features as ff
from tactful.flags.mutate import indent_of, mutate

REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / ".cache" / "flag"
#: The project's shared data folder, beside the checkout (development data, never needed at run
#: time).
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(env: str, *parts: str) -> Path:
    """A file of :data:`SHARED_DATA` (``parts`` below it), or the path in the environment
    variable ``env`` where that is set."""
    return Path(os.environ.get(env, SHARED_DATA.joinpath(*parts)))


#: ConDefects (development set); ``TACTFUL_CONDEFECTS`` overrides it.
CONDEFECTS = shared_data("TACTFUL_CONDEFECTS", "condefects", "condefects_python.jsonl.gz")
SEED = 20260415
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
        ind = indent_of(lines[s])
        e = s + 1
        while (
            e < len(lines)
            and e - s < max_lines
            and (not lines[e].strip() or indent_of(lines[e]) > ind)
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
    picker: Any = None,
    memo: Any = None,
) -> Path:
    """Run the pipeline (heuristic first stage, bug lines always regenerated) over ``samples``
    ``(id, text, bug_lines_0based)`` and append one JSON line per sample to .cache/flag/NAME.jsonl
    (samples already there are skipped, so an interrupted build resumes).

    ``also(id, text)``: more lines to regenerate (the top lines of the prior classifier, so that
    the lines a trained first stage picks were regenerated too). ``picker``: the first stage
    that picks the other lines (default the heuristic). ``memo``: a window memo (with a store,
    a sample whose windows were seen before costs no model work for them)."""
    from tactful.flags.job import FlagJob
    from tactful.flags.model import FlagModel
    from tactful.flags.plan import RegenOptions

    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"{name}.jsonl"
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            try:
                done.add(json.loads(line)["id"])
            except (ValueError, KeyError):
                continue
    picker = FlagModel() if picker is None else picker
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
                model=picker,
                options=RegenOptions(regen_extra=regen_extra, force=sorted(set(bugs) | set(extra))),
                key="train",
                memo=memo,
            )
            record = _record(job, job.run(backend), sid, text, bugs, dtype)
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


def _record(job: Any, res: Any, sid: str, text: str, bugs: list[int], dtype: str) -> dict[str, Any]:
    """One sample of a dataset: every considered line's features from the finished ``job``
    (``res``: its result)."""
    rows: list[dict[str, Any]] = []
    for i, cheap, regen, p1 in job.rows():
        row = {"i": i, "y": int(i in bugs), "cheap": cheap, "regen": regen, "p1": p1}
        if regen is not None:  # the regenerated line ("s"), to study what it proposed
            row["s"] = job.info[i].suggestion
        rows.append(row)
    return {"id": sid, "bugs": bugs, "lines": res.lines, "rows": rows, "text": text, "dtype": dtype}


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


def condefects_fixed_samples(split: str, limit: int) -> list[tuple[str, str, list[int]]]:
    """The correct versions of the programs of :func:`condefects_samples` (id + ``#fixed``, no
    bug line): short correct code, negatives for the decision classifier."""
    from tactful.flags.realfix import FIXED

    return [
        (r["id"] + FIXED, r["correct_code"].replace("\r\n", "\n"), [])
        for r in condefects(split, limit=limit)
    ]


def condefects_fixed_lines(split: str, limit: int) -> dict[str, int]:
    """For the build: each correct version's fixed line (0-based; the fault line, since the
    fix replaced that one line), regenerated as the bug line is in the faulty version."""
    from tactful.flags.realfix import FIXED

    return {r["id"] + FIXED: r["fault_lines"][0] - 1 for r in condefects(split, limit=limit)}


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
        context = window_context_features(lines)
        for r in s["rows"]:
            i = r["i"]
            r["cheap"] = r["cheap"][:n_pass] + ff.text_features(lines[i]) + context[i] + [math.nan]
    return out


def window_context_features(lines: Sequence[str]) -> list[list[float]]:
    """The line-among-its-window features of every line, each window's own lines apart (as the
    flagger computes them for a document of several scoring windows)."""
    from tactful.flags.plan import plan_windows

    out: list[list[float]] = []
    for w in plan_windows(lines):
        out += ff.context_text_features(lines[w.start : w.end])
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
    from tactful.flags.plan import MAX_LINE_CHARS, NOT_CONSIDERED

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
    prior booster, or None for NaN), scored by the flagger's own :func:`tactful.flags.model.prior_scores`."""
    from tactful.flags.model import prior_scores

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
    from tactful.flags.model import prior_scores

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
