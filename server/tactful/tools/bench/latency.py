"""``tactful bench latency``: replay realistic typing against the real server over stdio.

Real source files (by default modules of Python's standard library, which were not written for
this benchmark) are typed character by character at a human pace, as an editor would send it:
a ``didChange`` and an inline completion request per keystroke, cancelling the previous request
(``$/cancelRequest``). The same typing is replayed twice in one run, with prefix reuse,
type-along and the cache on, then all three off (and no deadline: the baseline waits for every
whole suggestion), and the figures are printed side by side with the ratio of the medians.
Suggestions are single-line unless ``--multiline``; each run starts with an empty completion
cache. ``--deadline-ms`` sets the server's ``completion.deadlineMs`` for the tactful runs, and
``--no-deadline-run`` adds a run with the deadline off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygls.exceptions import JsonRpcException

from tactful.tools import lspclient
from tactful.tools.bench.common import (
    add_json_option,
    add_typing_options,
    completion_only,
    latency_figures,
    ms,
    pick_stretch,
    private_cache_dir,
    serving,
    stdlib_files,
    type_keys,
)
from tactful.tools.lspclient import as_dict

DEFAULT_FILES = ["textwrap.py", "shlex.py", "fractions.py"]


@dataclass
class Typing:
    """One typing session: the document before, the text typed, where."""

    path: str
    before: str
    typed: str
    after: str


@dataclass
class RunResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    with_suggestion: int = 0
    #: Characters of the first item of each answer with a suggestion.
    shown_chars: list[int] = field(default_factory=list)
    requests: int = 0
    cancelled: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


def pick_sessions(files: list[Path], lines_per_file: int, seed: int) -> list[Typing]:
    """From each file, a stretch of ``lines_per_file`` lines inside a function body to type."""
    rng = random.Random(seed)
    out = []
    for path in files:
        got = pick_stretch(path.read_text(encoding="utf-8"), lines_per_file, rng)
        if got is not None:
            out.append(Typing(str(path), *got))
    return out


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def run_once(
    name: str, sessions: list[Typing], settings: dict[str, Any], key_ms: float, seed: int
) -> RunResult:
    """One run: a server of its own (an empty completion cache) types every session."""
    res = RunResult(name)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="tactful-bench-") as tmp:
        settings = {**settings, "cacheDir": str(private_cache_dir(Path(tmp)))}
        async with serving("tactful-bench", settings) as client:
            for n, sess in enumerate(sessions):
                await type_session(
                    client, res, f"file:///bench/{n}-{Path(sess.path).name}", sess, key_ms, rng
                )
            res.status = await lspclient.status(client)
            proc = getattr(client, "_server", None)
            if proc is not None:
                res.peak_rss_mb = _peak_rss_mb(proc.pid)
    return res


async def ask_inline(client: Any, res: RunResult, uri: str, line: int, char: int) -> None:
    """One inline completion request, timed; its answer's first item counted."""
    fut = asyncio.ensure_future(lspclient.inline_completion(client, uri, line, char))
    started = time.perf_counter()
    res.requests += 1
    try:
        out = await fut
    except JsonRpcException:  # cancelled by the next keystroke, or superseded
        res.cancelled += 1
        return
    res.latencies_ms.append((time.perf_counter() - started) * 1000)
    first = lspclient.first_item(out)
    if first is not None:
        res.with_suggestion += 1
        res.shown_chars.append(len(lspclient.item_text(first)))


async def type_session(
    client: Any, res: RunResult, uri: str, sess: Typing, key_ms: float, rng: random.Random
) -> None:
    """Open the document and type ``sess.typed`` into it a key at a time, asking for a
    completion after each key and cancelling the previous request, as editors do."""
    lspclient.open_document(client, uri, sess.before + sess.after)

    def ask(line: int, char: int) -> Awaitable[None]:
        return ask_inline(client, res, uri, line, char)

    await type_keys(client, uri, sess.typed, sess.before.count("\n"), key_ms, rng, ask)


def summarize(r: RunResult) -> dict[str, Any]:
    stats = as_dict(r.status.get("stats", {}))
    backend = as_dict(r.status.get("backend", {}))
    model_lat = as_dict(r.status.get("modelLatency", {}))
    lat = r.latencies_ms
    return {
        "name": r.name,
        "requests": r.requests,
        "answered": len(lat),
        "with_suggestion": r.with_suggestion,
        "cancelled_or_superseded": r.cancelled,
        **latency_figures(lat),
        "p99_ms": ms(lat, 99),
        "suggestion_chars_p50": statistics.median(r.shown_chars) if r.shown_chars else None,
        "answered_by_model": model_lat.get("n"),
        "answered_in_part (deadline)": stats.get("partial"),
        "extended_after_deadline": stats.get("extended"),
        "model_p50_ms (server)": model_lat.get("p50Ms"),
        "model_p95_ms (server)": model_lat.get("p95Ms"),
        "type_along": stats.get("type_along"),
        "cache_hits": stats.get("cache_hits"),
        "model_calls": stats.get("model_calls"),
        "model_calls_cancelled": stats.get("cancelled"),
        "prefilled_tokens": backend.get("prefilled"),
        "reused_tokens": backend.get("reused"),
        "peak_rss_mb": round(r.peak_rss_mb, 1),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tactful bench latency", description=__doc__)
    add_typing_options(parser)
    parser.add_argument("--lines", type=int, default=3, help="lines typed per file (default 3)")
    parser.add_argument("--context-tokens", type=int, default=1500)
    parser.add_argument(
        "--deadline-ms",
        type=int,
        default=None,
        help="completion.deadlineMs for the tactful runs (default: the server's default)",
    )
    for flag, text in (
        ("--no-baseline", "skip the run with reuse and type-along off"),
        (
            "--multiline",
            "allow multi-line suggestions (default: single-line, as the latency targets are)",
        ),
        ("--stock-decode", "also run tactful with fastDecode off (stock transformers decoding)"),
        (
            "--no-deadline-run",
            "also run tactful with completion.deadlineMs 0 (wait for every whole suggestion)",
        ),
    ):
        parser.add_argument(flag, action="store_true", help=text)
    add_json_option(parser)
    return parser


def _run_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The server settings of each run, by name, in the order they run (the baseline last)."""
    common = completion_only(
        {"contextTokens": args.context_tokens, "debounceMs": 0, "multiline": args.multiline}
    )
    on = {"prefixReuse": True, "typeAlong": True, "cache": True}
    off = {"prefixReuse": False, "typeAlong": False, "cache": False, "deadlineMs": 0}
    deadline = {} if args.deadline_ms is None else {"deadlineMs": args.deadline_ms}
    fast = {**common, "completion": {**common["completion"], **on, **deadline}}
    runs: dict[str, dict[str, Any]] = {"tactful": fast}
    if args.stock_decode:
        runs["tactful, stock decode"] = {**fast, "fastDecode": False}
    if args.no_deadline_run:
        runs["tactful, no deadline"] = {
            **fast,
            "completion": {**fast["completion"], "deadlineMs": 0},
        }
    if not args.no_baseline:
        runs["no reuse, no type-along"] = {**common, "completion": {**common["completion"], **off}}
    return runs


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    files = args.files or stdlib_files(DEFAULT_FILES)
    sessions = pick_sessions(files, args.lines, args.seed)
    if not sessions:
        print("tactful bench latency: no typable stretch found in the files", file=sys.stderr)
        return 1
    keys = sum(len(s.typed) for s in sessions)
    print(
        f"typing {keys} keys from {len(sessions)} files at ~{args.key_ms:.0f} ms/key ...",
        file=sys.stderr,
    )
    results = [
        summarize(asyncio.run(run_once(name, sessions, settings, args.key_ms, args.seed)))
        for name, settings in _run_settings(args).items()
    ]
    ratio = None
    base = results[-1] if not args.no_baseline else None
    if base is not None and results[0]["p50_ms"] and base["p50_ms"]:
        ratio = round(base["p50_ms"] / results[0]["p50_ms"], 2)
    if args.json:
        print(json.dumps({"runs": results, "p50_ratio_baseline_over_tactful": ratio}, indent=2))
        return 0
    keys_ = list(results[0])[1:]
    width = max(len(k) for k in keys_)
    print(f"{'':<{width}}  " + "  ".join(f"{r['name']:>24}" for r in results))
    for k in keys_:
        print(f"{k:<{width}}  " + "  ".join(f"{r[k]!s:>24}" for r in results))
    if ratio is not None:
        print(f"\np50 ratio (baseline / tactful): {ratio}x")
    return 0
