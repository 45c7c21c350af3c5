"""``tactful bench infill``: single-line infilling quality of the ghost text as users get it.

Held-out SAFIM tasks (Python rows of ``block``, ``control`` and ``api`` completion whose hole is
one line; ``--data``, default ``../shared/data/safim``) are opened in the real server over stdio,
the document being the task's prefix + suffix with the hole empty, and
``textDocument/inlineCompletion`` is asked at the hole twice: once as an automatic request
(triggerKind Automatic: the server may answer with a part at ``completion.deadlineMs``) and once
as an explicit one (triggerKind Invoked: the server waits for the whole suggestion). Each answer
is applied to the document as an editor would and scored:

* ``exact``: the completed line equals the reference line, whitespace-normalised;
* ``pass``: SAFIM's own metric (its LOADER.md): for block/control tasks pass@1 (exact, or the
  completed program prints the expected output on every unit test, run in a ``python3 -I``
  subprocess with a time and memory limit); for api tasks "syntax match" (the completed call has
  the same AST as the reference call);
* ``cut``: the completed line ends mid-expression (an unclosed bracket or string, a trailing
  operator or a keyword that needs more) where the reference line does not.

Everything runs twice in one command: idle, and with the other core busy (a second process that
loads the embedded model and generates in a loop, started and stopped by this benchmark).

Held out: tasks are grouped by programming problem (the problem statement; a problem gives rise
to several tasks) and only problems whose hash is odd are used here; even ones are the dev half
for anyone tuning the completion path on SAFIM.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import gzip
import hashlib
import json
import keyword
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from tactful.tools import lspclient
from tactful.tools.bench.common import (
    add_json_option,
    completion_only,
    latency_figures,
    private_cache_dir,
    serving,
)

FILES = ("block", "control", "api")
MODES = {
    "automatic": types.InlineCompletionTriggerKind.Automatic,
    "invoked": types.InlineCompletionTriggerKind.Invoked,
}


# ---------------------------------------------------------------- tasks


@dataclass
class Task:
    """One SAFIM task: the program around a one-line hole."""

    kind: str  # block, control or api
    task_id: str
    prefix: str
    suffix: str
    ground_truth: str
    unit_tests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.task_id}"


def default_data_dir() -> Path:
    here = Path(__file__).resolve()
    for up in here.parents:
        cand = up / "shared" / "data" / "safim"
        if cand.is_dir():
            return cand
    return Path("/work/shared/data/safim")


def problem_group(row: dict[str, Any]) -> str:
    """The programming problem a task comes from: its statement (api tasks: the program)."""
    prompt = str(row.get("prompt", ""))
    if "Description:" in prompt:
        return prompt.split("Description:", 1)[1][:400]
    return str(row.get("eval_prompt", ""))[:400]


def held_out(group: str) -> bool:
    """True for the held-out half of the problems (the benchmark's); False for the dev half."""
    return int(hashlib.sha1(group.encode("utf-8")).hexdigest(), 16) % 2 == 1


def load_tasks(data: Path, n: int, seed: int) -> list[Task]:
    """``n`` held-out one-line Python tasks, drawn with ``seed`` across the three files."""
    pools: dict[str, list[Task]] = {}
    for kind in FILES:
        path = data / f"{kind}_completion.jsonl.gz"
        pool = pools.setdefault(kind, [])
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                gt = row["ground_truth"]
                if row["lang"] != "python" or "\n" in gt.strip() or not gt.strip():
                    continue
                if row["eval_prompt"].count("{{completion}}") != 1:
                    continue
                if not held_out(problem_group(row)):
                    continue
                prefix, suffix = row["eval_prompt"].split("{{completion}}", 1)
                pool.append(
                    Task(kind, row["task_id"], prefix, suffix, gt.strip(), row["unit_tests"])
                )
    rng = random.Random(seed)
    out: list[Task] = []
    for pool in pools.values():
        rng.shuffle(pool)
    # Round-robin over the files, so a small sample has all three kinds.
    iters = [iter(p) for p in pools.values()]
    while len(out) < n and iters:
        for it in list(iters):
            t = next(it, None)
            if t is None:
                iters.remove(it)
            elif len(out) < n:
                out.append(t)
    return out


# ---------------------------------------------------------------- scoring helpers (plain)


def normalise(line: str) -> str:
    """A line with runs of whitespace made one space and both ends stripped."""
    return " ".join(line.split())


def line_at(text: str, offset: int) -> str:
    """The whole line of ``text`` that holds ``offset``."""
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start : len(text) if end < 0 else end]


def utf16_position(text: str, offset: int) -> tuple[int, int]:
    """LSP line and (UTF-16) character of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return line, len(text[start:offset].encode("utf-16-le")) // 2


def apply_inline(prefix: str, suffix: str, insert: str, replace_before: int = 0) -> str:
    """The document after accepting ``insert`` at the end of ``prefix``, replacing the
    ``replace_before`` characters before the cursor (an item's range may start earlier)."""
    head = prefix[: len(prefix) - replace_before] if replace_before else prefix
    return head + insert + suffix


def unfinished(line: str) -> bool:
    """True when ``line`` ends mid-expression (:func:`why_unfinished`)."""
    return why_unfinished(line) is not None


def why_unfinished(line: str) -> str | None:
    """Why ``line`` ends mid-expression: ``"bracket"`` or ``"string"`` (one it opens is not
    closed), ``"operator"`` (it ends in an operator, a comma or a dot), ``"keyword"`` (a keyword
    that needs what follows), ``"colon"`` (a compound statement without its ``:``); None when
    it is finished. A line may close brackets opened on earlier lines.

    Its string and bracket scan looks like ``completion.deadline.stop_point``'s on purpose and
    is kept apart from it: this is the judge of the cuts that code makes, so it must not share
    (and hide) its bugs."""
    depth = 0
    quote: str | None = None
    i, n = 0, len(line)
    code_end = n
    block_colon = False  # a ':' outside brackets and strings
    while i < n:
        ch = line[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        if ch in "\"'":
            quote = ch * 3 if line.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        if ch == "#":
            code_end = i
            break
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == ":" and depth == 0:
            block_colon = True
        i += 1
    if quote is not None:
        return "string"
    if depth > 0:
        return "bracket"
    code = line[:code_end].rstrip()
    if not code:
        return None
    if code[-1] in "+-*/%=<>&|^~!,.;@\\":
        return "operator"
    last = code.split()[-1]
    word = "".join(c for c in last if c.isalnum() or c == "_")
    if word == last and keyword.iskeyword(word) and word not in _ENDING_KEYWORDS:
        return "keyword"
    if code.split()[0].rstrip(":") in _COMPOUND and not block_colon:
        return "colon"  # ``if x`` with no ``:`` yet
    return None


#: Statements that need a ``:`` on their line.
_COMPOUND = frozenset(
    ["if", "elif", "else", "while", "for", "def", "class", "with", "try", "except", "finally"]
)
#: Keywords a complete line may end with.
_ENDING_KEYWORDS = frozenset(["True", "False", "None", "pass", "break", "continue", "return"])


def cut_reason(completed_line: str, reference_line: str) -> str | None:
    """Why the answer was cut (:func:`why_unfinished` of the completed line), when the reference
    line is finished; None: not cut."""
    if unfinished(reference_line):
        return None
    return why_unfinished(completed_line)


def is_cut(completed_line: str, reference_line: str) -> bool:
    """The answer was cut: the completed line ends mid-expression, the reference line does not."""
    return cut_reason(completed_line, reference_line) is not None


def exact(completed_line: str, reference_line: str) -> bool:
    return normalise(completed_line) == normalise(reference_line)


def _call_dump(text: str) -> str | None:
    """The AST of ``text`` as one expression (e.g. a call), or None when it is not one."""
    try:
        node = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    return ast.dump(node.body)


def syntax_match(hole: str, ground_truth: str) -> bool:
    """SAFIM's api metric: the text in the hole is the same expression (same callee, same
    arguments) as the reference, as ASTs; whitespace-normalised equality counts too."""
    if normalise(hole) == normalise(ground_truth):
        return True
    want = _call_dump(ground_truth)
    return want is not None and _call_dump(hole) == want


def hole_text(task_prefix: str, task_suffix: str, document: str) -> str | None:
    """What stands in the hole of ``document`` (prefix + hole + suffix); None when the edit
    changed the prefix or suffix."""
    if not document.startswith(task_prefix) or not document.endswith(task_suffix):
        return None
    end = len(document) - len(task_suffix)
    return document[len(task_prefix) : end] if end >= len(task_prefix) else None


def same_output(got: str, want: Sequence[str]) -> bool:
    """The program's stdout matches one of the expected outputs, token by token."""
    toks = got.split()
    return any(toks == w.split() for w in want)


#: Runs a program with a memory (1 GiB) and CPU time (10 s) limit.
_LIMITED = (
    "import resource, runpy, sys\n"
    "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (10, 10))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def passes_tests(program: str, tests: Sequence[dict[str, Any]], timeout_s: float = 5.0) -> bool:
    """Run ``program`` in an isolated ``python3 -I`` on each test's stdin (stopping at the first
    failure), in an empty temporary folder with a time and memory limit."""
    if not tests:
        return False
    with tempfile.TemporaryDirectory(prefix="tactful-safim-") as tmp:
        src = Path(tmp) / "main.py"
        src.write_text(program, encoding="utf-8")
        for test in tests:
            try:
                run = subprocess.run(
                    [sys.executable, "-I", "-c", _LIMITED, str(src)],
                    input=test["input"],
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    cwd=tmp,
                    env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
                )
            except subprocess.TimeoutExpired:
                return False
            if run.returncode != 0 or not same_output(run.stdout, test["output"]):
                return False
    return True


# ---------------------------------------------------------------- driving the server


@dataclass
class Answer:
    task: str
    kind: str
    mode: str
    load: str
    latency_ms: float
    text: str | None  # the inserted text; None: no suggestion
    completed_line: str
    reference_line: str
    exact: bool
    cut: bool
    #: Why it was cut (:func:`why_unfinished`); None when not cut.
    cut_why: str | None = None
    passed: bool | None = None  # SAFIM's metric; None: not scored (--no-tests)
    document: str = ""


async def _ask(
    client: Any, uri: str, line: int, char: int, trigger: types.InlineCompletionTriggerKind
) -> tuple[float, str | None, int]:
    """One request at (``line``, ``char``): its time in ms, the text of its first item (None:
    no suggestion) and how many characters before the cursor that item replaces."""
    started = time.perf_counter()
    out = await lspclient.inline_completion(client, uri, line, char, trigger)
    ms = (time.perf_counter() - started) * 1000
    first = lspclient.first_item(out)
    if first is None:
        return ms, None, 0
    text = lspclient.item_text(first)
    before = 0
    if first.range is not None and first.range.start.line == line:
        before = max(0, char - first.range.start.character)  # UTF-16 units; ASCII code
    return ms, text, before


async def run_load(load: str, tasks: list[Task], settings: dict[str, Any]) -> list[Answer]:
    """Start the server, ask every task in both modes, stop it."""
    answers: list[Answer] = []
    with tempfile.TemporaryDirectory(prefix="tactful-bench-") as tmp:
        settings = {**settings, "cacheDir": str(private_cache_dir(Path(tmp)))}
        async with serving("tactful-bench-infill", settings) as client:
            for i, task in enumerate(tasks):
                for mode in MODES:
                    uri = f"file:///bench/{load}/{mode}/{i}-{task.task_id}.py"
                    answers.append(await _answer(client, uri, task, mode, load))
    return answers


async def _answer(client: Any, uri: str, task: Task, mode: str, load: str) -> Answer:
    """Open the task's document as ``uri``, ask at the hole in ``mode``, score the answer as
    applied to the document, close it."""
    text = task.prefix + task.suffix
    line, char = utf16_position(text, len(task.prefix))
    reference = line_at(task.prefix + task.ground_truth + task.suffix, len(task.prefix))
    lspclient.open_document(client, uri, text)
    ms, ins, before = await _ask(client, uri, line, char, MODES[mode])
    doc = apply_inline(task.prefix, task.suffix, ins or "", before)
    completed = line_at(doc, len(task.prefix) - before)
    lspclient.close_document(client, uri)
    return Answer(
        task=task.key,
        kind=task.kind,
        mode=mode,
        load=load,
        latency_ms=ms,
        text=ins,
        completed_line=completed,
        reference_line=reference,
        exact=exact(completed, reference),
        cut=ins is not None and is_cut(completed, reference),
        cut_why=None if ins is None else cut_reason(completed, reference),
        document=doc,
    )


def score_metric(answers: list[Answer], tasks: dict[str, Task]) -> None:
    """Fill in each answer's SAFIM metric (runs the unit tests of block/control tasks)."""
    memo: dict[tuple[str, str], bool] = {}
    for a in answers:
        task = tasks[a.task]
        if a.exact:
            a.passed = True
            continue
        if a.text is None:
            a.passed = False
            continue
        hole = hole_text(task.prefix, task.suffix, a.document)
        if task.kind == "api":
            a.passed = hole is not None and syntax_match(hole, task.ground_truth)
            continue
        key = (a.task, a.document)
        if key not in memo:
            memo[key] = passes_tests(a.document, task.unit_tests)
        a.passed = memo[key]


# ---------------------------------------------------------------- the busy core

_BUSY = r"""
import signal, sys
from tactful import paths
from tactful.backend.hf import TransformersBackend
from tactful.backend.types import GenerateRequest
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
b = TransformersBackend.load(None, cache_dir=paths.cache_dir(), threads=1)
prefix = open(sys.argv[1], encoding="utf-8").read()[:6000]
print("ready", flush=True)
n = 0
try:
    while True:
        b.generate(GenerateRequest(prefix=prefix, max_new_tokens=32, single_line=False))
        n += 1
finally:
    print(n, flush=True)
"""


@contextlib.contextmanager
def busy_core(stats: dict[str, Any]) -> Iterator[None]:
    """A second process running the embedded model in a loop (prefill and generate, one thread)
    while the block runs; ``stats['busy_generations']`` says how much it did."""
    src = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUSY, str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the busy process did not start (is the embedded model installed?)")
        yield
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = out.split()
        stats["busy_generations"] = int(lines[-1]) if lines and lines[-1].isdigit() else None


# ---------------------------------------------------------------- figures


def summarize(answers: list[Answer]) -> dict[str, Any]:
    """Per mode x load: n, answered, exact, pass, cut, latency median/p95."""
    out: dict[str, Any] = {}
    for load in dict.fromkeys(a.load for a in answers):
        for mode in MODES:
            xs = [a for a in answers if a.load == load and a.mode == mode]
            lat = [a.latency_ms for a in xs]
            scored = [a for a in xs if a.passed is not None]
            out[f"{mode}/{load}"] = {
                "n": len(xs),
                "answered": sum(a.text is not None for a in xs),
                "exact": sum(a.exact for a in xs),
                "pass": sum(bool(a.passed) for a in scored) if scored else None,
                "cut": sum(a.cut for a in xs),
                # cut with a bracket or string open, or a trailing operator
                "cut_unbalanced": sum(a.cut_why in ("bracket", "string", "operator") for a in xs),
                "one_word": sum(a.text is not None and a.text.strip().isidentifier() for a in xs),
                "chars_p50": statistics.median(len(a.text) for a in xs if a.text)
                if any(a.text for a in xs)
                else None,
                **latency_figures(lat),
            }
    return out


def gaps(summary: dict[str, Any]) -> dict[str, Any]:
    """Idle minus busy, per mode (positive: worse under load; latency: busy / idle)."""
    out: dict[str, Any] = {}
    for mode in MODES:
        idle, busy = summary.get(f"{mode}/idle"), summary.get(f"{mode}/busy")
        if idle is None or busy is None:
            continue
        g: dict[str, Any] = {}
        for k in ("exact", "pass"):
            if idle[k] is not None and busy[k] is not None:
                g[f"{k}_lost"] = idle[k] - busy[k]
        g["cut_added"] = busy["cut"] - idle["cut"]
        if idle["p50_ms"] and busy["p50_ms"]:
            g["p50_ratio"] = round(busy["p50_ms"] / idle["p50_ms"], 2)
        out[mode] = g
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tactful bench infill", description=__doc__)
    p.add_argument("-n", type=int, default=40, help="tasks (default 40)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", type=Path, default=None, help="SAFIM folder (LOADER.md)")
    p.add_argument(
        "--deadline-ms", type=int, default=None, help="completion.deadlineMs (default: server's)"
    )
    p.add_argument("--no-busy", action="store_true", help="only the idle run")
    p.add_argument("--no-tests", action="store_true", help="skip running SAFIM's unit tests")
    add_json_option(p, "print only the JSON object")
    p.add_argument("--answers", type=Path, help="write every answer (JSON lines) here")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    data = args.data or default_data_dir()
    tasks = load_tasks(data, args.n, args.seed)
    if not tasks:
        print(f"tactful bench infill: no SAFIM tasks found in {data}", file=sys.stderr)
        return 1
    completion: dict[str, Any] = {"debounceMs": 0, "multiline": False, "cache": False}
    if args.deadline_ms is not None:
        completion["deadlineMs"] = args.deadline_ms
    settings = completion_only(completion)
    print(f"{len(tasks)} held-out SAFIM tasks, idle and busy ...", file=sys.stderr)
    extra: dict[str, Any] = {}
    answers = asyncio.run(run_load("idle", tasks, settings))
    if not args.no_busy:
        with busy_core(extra):
            answers += asyncio.run(run_load("busy", tasks, settings))
    if not args.no_tests:
        score_metric(answers, {t.key: t for t in tasks})
    summary = summarize(answers)
    result = {
        "tasks": len(tasks),
        "kinds": {k: sum(t.kind == k for t in tasks) for k in FILES},
        "deadline_ms": args.deadline_ms,
        "runs": summary,
        "gap_idle_vs_busy": gaps(summary),
        **extra,
    }
    if args.answers:
        with args.answers.open("w", encoding="utf-8") as fh:
            for a in answers:
                row = {k: v for k, v in vars(a).items() if k != "document"}
                fh.write(json.dumps(row) + "\n")
    print(json.dumps(result, indent=2))
    if not args.json:
        cols = ["n", "answered", "exact", "pass", "cut", "cut_unbalanced", "one_word", "p50_ms"]
        cols += ["p95_ms"]
        print(f"\n{'mode/load':<16}" + "".join(f"{c:>{max(9, len(c) + 1)}}" for c in cols))
        for name, row in summary.items():
            print(f"{name:<16}" + "".join(f"{row[c]!s:>{max(9, len(c) + 1)}}" for c in cols))
        for mode, g in result["gap_idle_vs_busy"].items():
            print(f"gap idle vs busy, {mode}: " + ", ".join(f"{k} {v}" for k, v in g.items()))
    return 0
