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
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tactful import stats

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
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        candidates = [
            i
            for i in range(60, len(lines) - lines_per_file)
            if lines[i].startswith("        ")
            and lines[i].strip()
            and not lines[i].strip().startswith(("#", '"'))
        ]
        if not candidates:
            continue
        start = rng.choice(candidates)
        before = "\n".join(lines[:start]) + "\n"
        typed = "\n".join(lines[start : start + lines_per_file])
        after = "\n" + "\n".join(lines[start + lines_per_file :])
        out.append(Typing(str(path), before, typed, after))
    return out


def ms(xs: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``xs`` (milliseconds), rounded for the table; None when empty."""
    v = stats.percentile(xs, q)
    return None if v is None else round(v, 1)


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def private_cache_dir(tmp: Path) -> Path:
    """A cache folder for one run: the installed model (linked, not copied) and an empty
    completion cache, so that no run answers from completions cached by an earlier one."""
    from tactful import paths

    models = paths.cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (tmp / "models").symlink_to(models, target_is_directory=True)
    return tmp


async def run_once(
    name: str, sessions: list[Typing], settings: dict[str, Any], key_ms: float, seed: int
) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="tactful-bench-") as tmp:
        settings = {**settings, "cacheDir": str(private_cache_dir(Path(tmp)))}
        return await _run_once(name, sessions, settings, key_ms, seed)


async def _run_once(
    name: str, sessions: list[Typing], settings: dict[str, Any], key_ms: float, seed: int
) -> RunResult:
    from tactful.tools import lspclient

    res = RunResult(name)
    rng = random.Random(seed)
    client, state = await lspclient.start(
        "tactful-bench", [str(Path(sys.executable).parent / "tactful"), "serve"], settings=settings
    )
    if not await lspclient.wait_ready(state, 300):
        raise RuntimeError(f"server not ready: {state}")
    for n, sess in enumerate(sessions):
        await _type_session(
            client, res, f"file:///bench/{n}-{Path(sess.path).name}", sess, key_ms, rng
        )
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    res.status = _as_dict(status)
    proc = getattr(client, "_server", None)
    if proc is not None:
        res.peak_rss_mb = _peak_rss_mb(proc.pid)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return res


async def _ask(client: Any, res: RunResult, uri: str, line: int, char: int) -> None:
    """One inline completion request, timed; its answer's first item counted."""
    fut = asyncio.ensure_future(
        client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=char),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
    )
    started = time.perf_counter()
    res.requests += 1
    try:
        out = await fut
    except JsonRpcException:  # cancelled by the next keystroke, or superseded
        res.cancelled += 1
        return
    res.latencies_ms.append((time.perf_counter() - started) * 1000)
    items = out.items if isinstance(out, types.InlineCompletionList) else out
    if items:
        res.with_suggestion += 1
        first = items[0].insert_text
        res.shown_chars.append(len(first if isinstance(first, str) else first.value))


async def _type_session(
    client: Any, res: RunResult, uri: str, sess: Typing, key_ms: float, rng: random.Random
) -> None:
    """Open the document and type ``sess.typed`` into it a key at a time, asking for a
    completion after each key and cancelling the previous request, as editors do."""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=sess.before + sess.after
            )
        )
    )
    version, line, col = 1, sess.before.count("\n"), 0
    inflight: asyncio.Task[None] | None = None
    for ch in sess.typed:
        version += 1
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(line, col), types.Position(line, col)),
                        text=ch,
                    )
                ],
            )
        )
        if ch == "\n":
            line, col = line + 1, 0
        else:
            col += len(ch.encode("utf-16-le")) // 2
        if inflight is not None and not inflight.done():
            # Cancel the previous request, as editors do.
            for i in [i for i, f in client.protocol._request_futures.items() if not f.done()]:
                client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=i))
        inflight = asyncio.ensure_future(_ask(client, res, uri, line, col))
        pause = key_ms / 1000 * rng.uniform(0.6, 1.4)
        if rng.random() < 0.08:
            pause += rng.uniform(0.4, 1.2)  # a thinking pause
        await asyncio.sleep(pause)
    if inflight is not None:
        await inflight


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {}


def summarize(r: RunResult) -> dict[str, Any]:
    stats = _as_dict(r.status.get("stats", {}))
    backend = _as_dict(r.status.get("backend", {}))
    model_lat = _as_dict(r.status.get("modelLatency", {}))
    lat = r.latencies_ms
    return {
        "name": r.name,
        "requests": r.requests,
        "answered": len(lat),
        "with_suggestion": r.with_suggestion,
        "cancelled_or_superseded": r.cancelled,
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p95_ms": ms(lat, 95),
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
    parser.add_argument(
        "files", nargs="*", type=Path, help="source files to type (default: stdlib modules)"
    )
    parser.add_argument("--lines", type=int, default=3, help="lines typed per file (default 3)")
    parser.add_argument(
        "--key-ms", type=float, default=80, help="mean time between keys (default 80)"
    )
    parser.add_argument("--seed", type=int, default=1)
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
        ("--json", "print one JSON object"),
    ):
        parser.add_argument(flag, action="store_true", help=text)
    return parser


def _run_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The server settings of each run, by name, in the order they run (the baseline last)."""
    common = {
        "completion": {
            "contextTokens": args.context_tokens,
            "debounceMs": 0,
            "multiline": args.multiline,
        },
        "flags": {"enable": False},
        "cdhf": {"enable": False},
        "feedback": {"enable": False},
    }
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
    files = args.files or [Path(sysconfig.get_paths()["stdlib"]) / f for f in DEFAULT_FILES]
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
