"""``tactful bench crossfile``: does repository context find the names defined in other files?

On the crossfile tasks (real lines of 11 Python repositories whose right completion uses a name
defined in another file of the same repository; see the data's LOADER.md), each repository is
written to a folder that is the server's workspace folder; for each task its file is written
with the target line emptied to its indentation (on disk and in the editor: the original of
that file is never given to the server), opened, and an inline completion is asked at the end
of the indentation, once with repository context off (``context.tokens`` 0) and once on, by the
same server in the same run. Scores: exact match of the line and the cross-name hit rate (every
cross-file name of the task is an identifier of the completed line), overall and for the tasks
whose names the file above the line does not already use (``in_file_only`` false).

``--recall`` counts, without the model, the tasks whose definitions the context holds (among
its candidates, and within the budget), and how far from the cursor they are.

Then typing latency: a stretch of a real file of one of these repositories is typed key by key
(a ``didChange`` and an inline request per key, the previous request cancelled, as an editor
does) into a server with the repository as its workspace, with context off and on.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types

from tactful.tools import lspclient
from tactful.tools.bench.common import (
    add_json_option,
    add_typing_options,
    completion_only,
    latency_figures,
    median_ms,
    pick_stretch,
    private_cache_dir,
    serving,
    type_keys,
)
from tactful.tools.bench.latency import RunResult, Typing, ask_inline
from tactful.tools.lspclient import as_dict

DEFAULT_DATA = Path(__file__).resolve().parents[5] / "shared" / "data" / "crossfile"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def score(task: dict[str, Any], completion: str) -> dict[str, bool]:
    """The LOADER's metric: exact line match and whether every cross name is on the line."""
    line = completion.split("\n", 1)[0]
    full = (task["indent"] + line).strip()
    ids = set(_IDENT.findall(full))
    return {
        "exact": full == task["target"].strip(),
        "cross_hit": all(n in ids for n in task["cross_names"]),
    }


def blank(task: dict[str, Any], text: str) -> tuple[str, int]:
    """The file with the target line emptied to its indentation, and the cursor offset."""
    lines = text.split("\n")
    i = task["line"] - 1
    if lines[i] != task["indent"] + task["target"]:
        raise ValueError(f"{task['id']}: the line does not match the task")
    lines[i] = task["indent"]
    return "\n".join(lines), sum(len(x) + 1 for x in lines[:i]) + len(task["indent"])


def write_repo(files: list[dict[str, Any]], root: Path) -> None:
    for f in files:
        dst = root / f["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(f["text"], encoding="utf-8", newline="")


def sample(tasks: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` tasks, the same ones for the same seed, sorted by repository and id."""
    rng = random.Random(int(hashlib.sha256(f"crossfile-bench:{seed}".encode()).hexdigest(), 16))
    picked = list(tasks)
    rng.shuffle(picked)
    return sorted(picked[:n], key=lambda t: (t["repo"], t["id"]))


async def _wait_index(client: Any, timeout: float = 120) -> dict[str, Any]:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        ws = as_dict((await lspclient.status(client)).get("workspace") or {})
        if ws.get("state") == "ready" and not ws.get("pending"):
            return ws
        await asyncio.sleep(0.2)
    raise RuntimeError("the workspace index was not ready in time")


def _settings(cache_dir: str, tokens: int, fmt: str) -> dict[str, Any]:
    # Each answer is the model's own: no cache, no type-along from the previous answer.
    completion = {
        "cache": False,
        "typeAlong": False,
        "deadlineMs": 0,
        "multiline": False,
        "debounceMs": 0,
    }
    return completion_only(
        completion,
        cacheDir=cache_dir,
        context={"enable": True, "tokens": tokens, "format": fmt},
    )


def _watched(client: Any, path: Path, kind: types.FileChangeType) -> None:
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=path.resolve().as_uri(), type=kind)]
        )
    )


def _write_blanked_repo(
    data: Path, repo: str, repo_tasks: list[dict[str, Any]], root: Path
) -> dict[str, str]:
    """Write ``repo`` to ``root`` with every task line of it blanked; its files' texts by path.

    Every task file is blanked on disk before the server starts: its index never holds the
    original of a task line."""
    files = read_jsonl_gz(data / "repos" / f"{repo}.jsonl.gz")
    texts = {f["path"]: f["text"] for f in files}
    write_repo(files, root)
    for t in repo_tasks:
        (root / t["path"]).write_text(blank(t, texts[t["path"]])[0], encoding="utf-8", newline="")
    return texts


def _arms(tokens: int, compare_guided: bool) -> list[tuple[str, dict[str, Any]]]:
    """Each answer's name and its ``context`` settings: without repository context, with it
    (name-guided decoding as configured, or off when ``compare_guided``), and with it and
    name-guided decoding on (``guided``, only when ``compare_guided``)."""
    if not compare_guided:
        return [("without", {"tokens": 0}), ("with", {"tokens": tokens})]
    return [
        ("without", {"tokens": 0}),
        ("with", {"tokens": tokens, "guidedNames": False}),
        ("guided", {"tokens": tokens, "guidedNames": True}),
    ]


async def _ask_task(
    client: Any, t: dict[str, Any], root: Path, original: str, tokens: int, compare: bool
) -> dict[str, Any]:
    """One task: its file written with only this task's line blanked and opened, then an
    inline completion at the line for each of ``_arms``."""
    path = root / t["path"]
    doc = blank(t, original)[0]
    path.write_text(doc, encoding="utf-8", newline="")
    _watched(client, path, types.FileChangeType.Changed)
    uri = path.resolve().as_uri()
    lspclient.open_document(client, uri, doc)
    row: dict[str, Any] = {"id": t["id"], "in_file_only": t["in_file_only"], "target": t["target"]}
    for name, context in _arms(tokens, compare):
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"context": context})
        )
        t0 = time.perf_counter()
        out = await lspclient.inline_completion(
            client, uri, t["line"] - 1, len(t["indent"]), types.InlineCompletionTriggerKind.Invoked
        )
        item = lspclient.first_item(out)
        text = "" if item is None else lspclient.item_text(item)
        row[name] = {
            "completion": text.split("\n", 1)[0],
            "ms": round((time.perf_counter() - t0) * 1000, 1),
            **score(t, text),
        }
    lspclient.close_document(client, uri)
    return row


async def accuracy(
    data: Path,
    tasks: list[dict[str, Any]],
    tokens: int,
    fmt: str,
    tmp: Path,
    compare_guided: bool = False,
) -> list[dict[str, Any]]:
    """Per task: the completion and scores without and with repository context (one server
    per repository, with the repository as its workspace folder)."""
    (tmp / "cache").mkdir(parents=True, exist_ok=True)
    cache = str(private_cache_dir(tmp / "cache"))
    by_repo: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_repo.setdefault(t["repo"], []).append(t)
    results: list[dict[str, Any]] = []
    for repo, repo_tasks in by_repo.items():
        root = tmp / "ws" / repo
        texts = _write_blanked_repo(data, repo, repo_tasks, root)
        settings = _settings(cache, tokens, fmt)
        async with serving("tactful-bench-crossfile", settings, root=str(root)) as client:
            ws = await _wait_index(client)
            print(f"{repo}: {ws.get('report')}", file=sys.stderr)
            for t in repo_tasks:
                row = await _ask_task(client, t, root, texts[t["path"]], tokens, compare_guided)
                results.append(row)
    return results


def _found(parts: Sequence[Any], root: Path, d: dict[str, Any]) -> Any:
    """The part that shows definition ``d`` of a task (its ``site``), or None."""
    site, line = d["site"].rsplit(":", 1)
    path = str((root / site).resolve())
    return next((p for p in parts if p.path == path and p.line == int(line) - 1), None)


def recall(data: Path, tasks: list[dict[str, Any]], tokens: int, tmp: Path) -> dict[str, Any]:
    """Context recall, no model: for how many tasks the definitions of all the task's cross
    names are among the context's candidates (any budget) and among the parts chosen within
    ``tokens``; and how far (characters) a chosen definition is from the cursor (the rest of
    the preamble after it plus the prompt's window of the file)."""
    from tactful.completion.context import build_context
    from tactful.workspace import files as wf
    from tactful.workspace.select import STARCODER2, render
    from tactful.workspace.service import Options, WorkspaceService

    by_repo: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_repo.setdefault(t["repo"], []).append(t)
    rows: list[dict[str, Any]] = []
    for repo, repo_tasks in sorted(by_repo.items()):
        root = tmp / "recall" / repo
        texts = _write_blanked_repo(data, repo, repo_tasks, root)
        svc = WorkspaceService(None, lambda: Options(tokens=tokens))
        svc.start([str(root)])
        svc.built.wait(120)
        svc.wait_idle(30)
        for t in repo_tasks:
            doc, off = blank(t, texts[t["path"]])
            uri = wf.path_to_uri(str(root / t["path"]))
            start = build_context(doc, off, "python").prefix_start
            chosen = svc.parts(uri, doc, off, "python", start, tokens)
            every = svc.parts(uri, doc, off, "python", start, 10**9)
            pre = render(chosen, STARCODER2, repo=repo, current_rel=t["path"], language="python")
            found = [_found(chosen, root, d) for d in t["definitions"]]
            far = [len(pre) - pre.rfind(p.text) + off - start for p in found if p is not None]
            rows.append(
                {
                    "in_file_only": t["in_file_only"],
                    "candidates": all(_found(every, root, d) for d in t["definitions"]),
                    "chosen": all(p is not None for p in found),
                    "chars_to_cursor": max(far) if far else None,
                }
            )
        svc.stop()
    far_all = sorted(r["chars_to_cursor"] for r in rows if r["chars_to_cursor"] is not None)
    out: dict[str, Any] = {}
    for label, sel in (
        ("all", rows),
        ("in_file_only=false", [r for r in rows if not r["in_file_only"]]),
    ):
        out[label] = {
            "n": len(sel),
            "candidates": sum(r["candidates"] for r in sel),
            "chosen": sum(r["chosen"] for r in sel),
        }
    out["chars_to_cursor_p50"] = far_all[len(far_all) // 2] if far_all else None
    return out


def _ratio(arm: dict[str, Any], without: dict[str, Any]) -> float | None:
    if arm["cross_hit"] is None or not without["cross_hit"]:
        return None
    return round(arm["cross_hit"] / without["cross_hit"], 2)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rates(sel: list[dict[str, Any]], name: str) -> dict[str, Any]:
        n = len(sel)
        ex = sum(r[name]["exact"] for r in sel)
        hit = sum(r[name]["cross_hit"] for r in sel)
        return {
            "n": n,
            "exact": round(ex / n, 3) if n else None,
            "cross_hit": round(hit / n, 3) if n else None,
            "exact_count": ex,
            "cross_hit_count": hit,
        }

    out: dict[str, Any] = {}
    for label, sel in (
        ("all", rows),
        ("in_file_only=false", [r for r in rows if not r["in_file_only"]]),
        ("in_file_only=true", [r for r in rows if r["in_file_only"]]),
    ):
        w, wo = rates(sel, "with"), rates(sel, "without")
        out[label] = {"without": wo, "with": w, "cross_hit_ratio": _ratio(w, wo)}
        if sel and "guided" in sel[0]:
            g = rates(sel, "guided")
            out[label].update(guided=g, guided_cross_hit_ratio=_ratio(g, wo))
    if rows:
        out["completion_ms_p50"] = {
            "without": median_ms([r["without"]["ms"] for r in rows]),
            "with": median_ms([r["with"]["ms"] for r in rows]),
        }
    return out


def _pick_typing(
    files: list[dict[str, Any]], root: Path, path: str | None, lines: int, rng: random.Random
) -> Typing:
    """The stretch of a file of the repository written at ``root`` to type (of ``path``, or of
    a file of over 200 lines drawn with ``rng``); the file on disk is left without it, as the
    file being typed is."""
    if path is None:
        path = rng.choice(sorted(f["path"] for f in files if f["text"].count("\n") > 200))
    got = pick_stretch((root / path).read_text(encoding="utf-8"), lines, rng)
    if got is None:
        raise ValueError(f"no typable stretch in {path}")
    before, typed, after = got
    (root / path).write_text(before + after, encoding="utf-8", newline="")
    return Typing(path, before, typed, after)


async def _typing_run(
    root: Path, sess: Typing, settings: dict[str, Any], key_ms: float, seed: int
) -> dict[str, Any]:
    """Type ``sess`` into a server with ``settings`` and the repository at ``root`` as its
    workspace; the latencies and the model's prefilled and reused tokens."""
    res = RunResult("typing")
    async with serving("tactful-bench-typing", settings, root=str(root)) as client:
        await _wait_index(client)
        uri = (root / sess.path).resolve().as_uri()
        lspclient.open_document(client, uri, sess.before + sess.after)
        line = sess.before.count("\n")
        # The file is open before typing starts (as when one reads it first): its first,
        # cold prompt is prefilled by a request that is not timed, in both runs.
        await ask_inline(client, RunResult("prefill"), uri, line, 0)

        def ask(line: int, char: int) -> Awaitable[None]:
            return ask_inline(client, res, uri, line, char)

        await type_keys(client, uri, sess.typed, line, key_ms, random.Random(seed), ask)
        st = await lspclient.status(client)
    backend = as_dict(st.get("backend", {}))
    return {
        "answered": len(res.latencies_ms),
        "cancelled": res.cancelled,
        **latency_figures(res.latencies_ms),
        "prefilled_tokens": backend.get("prefilled"),
        "reused_tokens": backend.get("reused"),
    }


async def typing(
    data: Path,
    repo: str,
    path: str | None,
    lines: int,
    tokens: int,
    fmt: str,
    key_ms: float,
    seed: int,
    tmp: Path,
) -> dict[str, Any]:
    """Typing latency in a file of ``repo`` with context off and on (one server each)."""
    files = read_jsonl_gz(data / "repos" / f"{repo}.jsonl.gz")
    root = tmp / "typing" / repo
    write_repo(files, root)
    sess = _pick_typing(files, root, path, lines, random.Random(seed))
    out: dict[str, Any] = {"repo": repo, "file": sess.path, "keys": len(sess.typed)}
    for name, budget in (("without", 0), ("with", tokens)):
        cache = str(private_cache_dir(Path(tempfile.mkdtemp(dir=tmp, prefix="cache-"))))
        settings = _settings(cache, budget, fmt)
        settings["completion"] = {"cache": True, "debounceMs": 0, "multiline": False}
        out[name] = await _typing_run(root, sess, settings, key_ms, seed)
    if out["with"]["p50_ms"] is not None and out["without"]["p50_ms"] is not None:
        out["p50_delta_ms"] = round(out["with"]["p50_ms"] - out["without"]["p50_ms"], 1)
        out["p95_delta_ms"] = round(out["with"]["p95_ms"] - out["without"]["p95_ms"], 1)
    return out


def index_bench(data: Path, n_files: int, tmp: Path) -> dict[str, Any]:
    """Build the index of a workspace of ``n_files`` Python files (copies of the repositories)
    in the background, then again after a "restart" (from the persisted rows): times, memory,
    and the time of a context query on the event loop's side while the build runs."""
    import psutil

    from tactful import stats
    from tactful.workspace import files as wf
    from tactful.workspace.service import Options, WorkspaceService

    root = tmp / "big"
    repos = sorted(p.name.removesuffix(".jsonl.gz") for p in (data / "repos").glob("*.jsonl.gz"))
    written, copy = 0, 0
    while written < n_files:
        for repo in repos:
            for f in read_jsonl_gz(data / "repos" / f"{repo}.jsonl.gz"):
                if written >= n_files:
                    break
                dst = root / f"copy{copy}" / repo / f["path"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(f["text"], encoding="utf-8", newline="")
                written += 1
        copy += 1
    probe = next(root.rglob("*.py"))
    probe_text = probe.read_text(encoding="utf-8")
    proc = psutil.Process()
    out: dict[str, Any] = {"files": written}
    opts = Options(max_files=max(5000, n_files))
    for run in ("cold", "restart"):
        rss0 = proc.memory_info().rss
        svc = WorkspaceService(tmp / "index-cache", lambda: opts)
        t0 = time.perf_counter()
        svc.start([str(root)])
        query_ms: list[float] = []
        while not svc.built.wait(0.05):
            q0 = time.perf_counter()
            svc.context(wf.path_to_uri(str(probe)), probe_text, len(probe_text) // 2, "python", 0)
            query_ms.append((time.perf_counter() - q0) * 1000)
        seconds = time.perf_counter() - t0
        rss1 = proc.memory_info().rss
        query_p95 = stats.percentile(query_ms, 95)
        out[run] = {
            "seconds": round(seconds, 2),
            "indexed": len(svc.index.files),
            "rss_growth_mb": round((rss1 - rss0) / 2**20, 1),
            "context_queries_during_build": len(query_ms),
            "context_query_p95_ms": None if query_p95 is None else round(query_p95, 2),
            "report": svc.last_report,
        }
        svc.stop()
    out["rss_total_mb"] = round(proc.memory_info().rss / 2**20, 1)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tactful bench crossfile", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the crossfile folder")
    parser.add_argument("--tasks", type=int, default=40, help="tasks sampled (default 40)")
    parser.add_argument("--repos", default="", help="comma-separated repositories (owner+name)")
    parser.add_argument("--tokens", type=int, default=512, help="context.tokens (default 512)")
    parser.add_argument("--format", default="auto", choices=("auto", "comments"))
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument(
        "--compare-guided",
        action="store_true",
        help="answer with context twice: context.guidedNames off ('with') and on ('guided')",
    )
    parser.add_argument(
        "--recall",
        action="store_true",
        help="also count, without the model, the tasks whose definitions the context holds",
    )
    parser.add_argument("--typing-repo", default="psf+requests", help="'' skips typing")
    parser.add_argument("--typing-file", default=None)
    parser.add_argument("--typing-lines", type=int, default=3)
    add_typing_options(parser, files=False)
    parser.add_argument(
        "--index-files",
        type=int,
        default=0,
        help="also time the index of a workspace of this many files (copies of the repositories)",
    )
    add_json_option(parser)
    parser.add_argument("--rows", type=Path, default=None, help="write per-task rows (JSONL)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not (args.data / "tasks_dev.jsonl.gz").is_file():
        print(f"tactful bench crossfile: no tasks in {args.data} (--data)", file=sys.stderr)
        return 1
    tasks = read_jsonl_gz(args.data / "tasks_dev.jsonl.gz")
    if args.repos:
        keep = set(args.repos.split(","))
        tasks = [t for t in tasks if t["repo"] in keep]
    picked = sample(tasks, args.tasks, args.seed)
    report: dict[str, Any] = {"tasks": len(picked), "tokens": args.tokens, "format": args.format}
    with tempfile.TemporaryDirectory(prefix="tactful-crossfile-") as tmp:
        if args.index_files:
            report["index"] = index_bench(args.data, args.index_files, Path(tmp))
        if args.recall:
            report["recall"] = recall(args.data, picked, args.tokens, Path(tmp))
        if not args.no_accuracy and picked:
            t0 = time.perf_counter()
            rows = asyncio.run(
                accuracy(
                    args.data, picked, args.tokens, args.format, Path(tmp), args.compare_guided
                )
            )
            report["accuracy"] = summarize(rows)
            report["accuracy_seconds"] = round(time.perf_counter() - t0, 1)
            if args.rows is not None:
                args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if args.typing_repo:
            report["typing"] = asyncio.run(
                typing(
                    args.data,
                    args.typing_repo,
                    args.typing_file,
                    args.typing_lines,
                    args.tokens,
                    args.format,
                    args.key_ms,
                    args.seed,
                    Path(tmp),
                )
            )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(_table(report))
    return 0


def _table(report: dict[str, Any]) -> str:
    out = [
        f"crossfile: {report['tasks']} tasks, context.tokens {report['tokens']}, format {report['format']}"
    ]
    acc = report.get("accuracy")
    if acc:
        out.append(
            f"{'tasks':<22} {'n':>4}  {'exact w/o':>9} {'exact with':>10}  {'hit w/o':>8} {'hit with':>8}  ratio"
        )
        for label in ("all", "in_file_only=false", "in_file_only=true"):
            a = acc[label]
            out.append(
                f"{label:<22} {a['with']['n']:>4}  {a['without']['exact']!s:>9} {a['with']['exact']!s:>10}"
                f"  {a['without']['cross_hit']!s:>8} {a['with']['cross_hit']!s:>8}  {a['cross_hit_ratio']}"
            )
            if "guided" in a:
                g = a["guided"]
                out.append(
                    f"{'  guided names':<22} {g['n']:>4}  {'':>9} {g['exact']!s:>10}"
                    f"  {'':>8} {g['cross_hit']!s:>8}  {a['guided_cross_hit_ratio']}"
                )
        if "completion_ms_p50" in acc:
            out.append(f"completion p50 ms: {acc['completion_ms_p50']}")
    rc = report.get("recall")
    if rc:
        for label in ("all", "in_file_only=false"):
            out.append(f"context recall, {label}: {rc[label]}")
        out.append(
            f"  a chosen definition's distance to the cursor, p50: {rc['chars_to_cursor_p50']} chars"
        )
    ix = report.get("index")
    if ix:
        out.append(f"index of {ix['files']} files:")
        for run in ("cold", "restart"):
            out.append(f"  {run:<8} {ix[run]}")
    ty = report.get("typing")
    if ty:
        out.append(f"typing {ty['keys']} keys in {ty['repo']}/{ty['file']}:")
        for name in ("without", "with"):
            out.append(f"  {name:<8} {ty[name]}")
        if "p50_delta_ms" in ty:
            out.append(f"  delta p50 {ty['p50_delta_ms']} ms, p95 {ty['p95_delta_ms']} ms")
    return "\n".join(out)
