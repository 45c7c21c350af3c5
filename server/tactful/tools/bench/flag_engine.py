"""``tactful bench flag_engine --url URL``: line flags through an inference engine side by side
with the in-process model, on the same machine and the same held-out programs.

The engine must serve the same model as the in-process backend (by default the embedded
SmolLM2-135M-Instruct, e.g. vLLM started as ``tests/engine/launch.py`` does). Each program is
flagged by the real flag job (``FlagJob``, as ``tactful bench flag`` runs it: budget mode, no
threshold) twice, once with the in-process model and once through the engine (the
``RoutingBackend`` the server builds from ``engine.*`` settings, with ``onUnreachable: none`` so
that no embedded model answers in disguise: a program the engine failed on is reported, not
counted). The two runs alternate which goes first. Printed side by side:

- recall at the budget and top-3, each against a random ranking of the same lines;
- seconds per 100 lines (pooled, and per program: median and p95);
- the engine's requests: its own counter of ``/v1/completions`` requests (one scoring request
  per window, one per regenerated line that the model would not write as it stands, the
  one-token requests that heal a partial word, and the retries: failed ones, and a
  regeneration sent again without token healing), and every HTTP request it sent (with
  ``/tokenize`` and ``/detokenize``), by path;
- how far the two agree on the flagged lines: identical flag sets, mean Jaccard, the pooled
  overlap against what two random choices of as many lines would share, and the same outcome on
  the bug line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tactful.flags.model import FlagModel
from tactful.stats import percentile
from tactful.tools.bench import flag as bench_flag

#: The two sides, in the order they are printed.
SIDES = ("in_process", "engine")


def program_record(
    backend: Any,
    text: str,
    bug: int,
    model: FlagModel,
    budget: float,
    counters: Callable[[], Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """Flag one program with ``backend`` through the flag job (``bench flag``'s run): its flags,
    the bug's outcome at the budget and in the top 3, the random expectation of both, the time,
    and (with ``counters``, the engine's request counters read before and after) the engine
    requests it took, how many of them failed (a failed regeneration that was not retried
    leaves its line without an alternative), and how many were sent again because the model
    would not write a healed-away end of the prompt (``heal_missed``)."""
    before = dict(counters()) if counters is not None else {}
    job, res, secs = bench_flag._run(backend, text, model, budget, naive=False)
    ours, rand = bench_flag._rows(job, res, secs, bug)
    rec: dict[str, Any] = {
        "flags": sorted(f.line for f in res.flags),
        "hit": bool(ours[2]),
        "top3": ours[1],
        "random_recall": rand[2],
        "random_top3": rand[1],
        "seconds": secs,
        "lines": res.lines,
        "considered": len(job.considered),
        "regenerated": res.regenerated,
        # Lines whose regeneration is the line itself (every token the model's choice): no call.
        "shortcuts": job.shortcuts,
    }
    if counters is not None:
        after = counters()
        rec["requests"] = after["requests"] - before["requests"]
        rec["failed_requests"] = after["failed"] - before["failed"]
        rec["heal_retries"] = after["heal_missed"] - before["heal_missed"]
        if "http" in after:
            rec["http_requests"] = after["http"] - before["http"]
    return rec


def side_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One side's figures over its programs (those it did not fail on)."""
    ok = [r for r in records if not r.get("error")]
    n = len(ok)
    if not n:
        return {"programs": 0, "failed": len(records)}
    recall = sum(r["hit"] for r in ok) / n
    rand = sum(r["random_recall"] for r in ok) / n
    top3 = sum(r["top3"] for r in ok) / n
    rand3 = sum(r["random_top3"] for r in ok) / n
    per100 = [100 * r["seconds"] / max(1, r["lines"]) for r in ok]
    lines = sum(r["lines"] for r in ok)
    out: dict[str, Any] = {
        "programs": n,
        "failed": len(records) - n,
        "lines": lines,
        "recall_at_budget": round(recall, 4),
        "random_recall": round(rand, 4),
        "recall_ratio": round(recall / rand, 2) if rand else None,
        "top3": round(top3, 4),
        "random_top3": round(rand3, 4),
        "top3_ratio": round(top3 / rand3, 2) if rand3 else None,
        "seconds_per_100_lines": round(100 * sum(r["seconds"] for r in ok) / max(1, lines), 2),
        "seconds_per_100_lines_p50": round(statistics.median(per100), 2),
        "seconds_per_100_lines_p95": round(percentile(per100, 95) or 0.0, 2),
        "regenerated": sum(r["regenerated"] for r in ok),
        "regenerated_by_the_model": sum(r["regenerated"] - r["shortcuts"] for r in ok),
    }
    if all("requests" in r for r in ok):
        total = sum(r["requests"] for r in ok)
        out["requests"] = total
        out["failed_requests"] = sum(r["failed_requests"] for r in ok)
        out["heal_retries"] = sum(r["heal_retries"] for r in ok)
        if all("http_requests" in r for r in ok):
            out["http_requests"] = sum(r["http_requests"] for r in ok)
        out["requests_per_program"] = round(total / n, 2)
        out["requests_per_100_lines"] = round(100 * total / max(1, lines), 2)
    return out


def agreement(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How far two runs over the same programs agree on the flagged lines (programs where both
    ran): identical flag sets, the mean Jaccard index (1 where both flag nothing), the pooled
    overlap ``2 |A ∩ B| / (|A| + |B|)`` and its chance level (two independent random choices of
    ``|A|`` and ``|B|`` of the ``c`` considered lines share ``|A| |B| / c`` on average), and
    the programs where the bug line has the same outcome (flagged by both or by neither)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not x.get("error") and not y.get("error")]
    if not pairs:
        return {"programs": 0}
    same = jaccard = shared = sizes = chance = outcome = 0.0
    for x, y in pairs:
        fa, fb = set(x["flags"]), set(y["flags"])
        union = fa | fb
        same += fa == fb
        jaccard += len(fa & fb) / len(union) if union else 1.0
        shared += 2 * len(fa & fb)
        sizes += len(fa) + len(fb)
        chance += 2 * len(fa) * len(fb) / max(1, x["considered"])
        outcome += x["hit"] == y["hit"]
    n = len(pairs)
    return {
        "programs": n,
        "identical_flag_sets": int(same),
        "mean_jaccard": round(jaccard / n, 4),
        "pooled_overlap": round(shared / sizes, 4) if sizes else None,
        "chance_overlap": round(chance / sizes, 4) if sizes else None,
        "same_bug_outcome": int(outcome),
    }


def count_http(engine: Any) -> Counter[str]:
    """Every HTTP request the routing backend's engine sends from now on, by the last part of
    its path (``completions``, ``tokenize``, ``detokenize``, ``models``): a request hook on its
    connection pool. The engine's own counter (``stats["requests"]``) counts the completions
    requests only."""
    counts: Counter[str] = Counter()

    async def hook(request: Any) -> None:
        counts[request.url.path.rsplit("/", 1)[-1]] += 1

    http = engine.engine.client.http
    http.event_hooks = {**http.event_hooks, "request": [*http.event_hooks["request"], hook]}
    return counts


def _flag_both(
    backends: dict[str, Any],
    programs: Sequence[tuple[str, str, int]],
    model: FlagModel,
    budget: float,
    engine_counters: Callable[[], Mapping[str, int]],
    log: Any = sys.stderr,
) -> dict[str, list[dict[str, Any]]]:
    """Each program flagged on both sides, alternating which goes first; an exception on one
    side is that side's failure on that program (recorded with its message), not the run's."""
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    for k, (pid, text, bug) in enumerate(programs):
        order = SIDES if k % 2 == 0 else SIDES[::-1]
        got: dict[str, dict[str, Any]] = {}
        for side in order:
            counter = engine_counters if side == "engine" else None
            try:
                got[side] = program_record(backends[side], text, bug, model, budget, counter)
            except Exception as exc:  # the engine failed: report it, go on
                got[side] = {"error": f"{type(exc).__name__}: {exc}"}
        note = []
        for side in SIDES:
            r = records[side]
            r.append({"id": pid, **got[side]})
            rec = got[side]
            note.append(
                f"{side} FAILED ({rec['error']})"
                if rec.get("error")
                else f"{side} {'hit' if rec['hit'] else 'miss'} {rec['seconds']:.1f}s "
                f"flags {rec['flags']}"
            )
        print(f"[{k + 1}/{len(programs)}] {pid}: " + "; ".join(note), file=log, flush=True)
    return records


def heldout_programs(n: int, min_lines: int, max_lines: int) -> list[tuple[str, str, int]]:
    """``(id, text, bug_line_0based)``: the first ``n`` held-out ConDefects programs (by id)
    that ``tactful bench flag -n N`` takes with the same line limits (its own choice)."""
    chosen = argparse.Namespace(split="heldout", n=n, min_lines=min_lines, max_lines=max_lines)
    return bench_flag._condefects_programs(chosen)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    from tactful.config import EngineSettings

    defaults = EngineSettings()
    ap = argparse.ArgumentParser(prog="tactful bench flag_engine", description=__doc__)
    ap.add_argument("--url", required=True, help="the engine's /v1 URL")
    ap.add_argument("--engine-model", default=None, help="served model (default: the first)")
    ap.add_argument("-n", type=int, default=25, help="held-out programs (default 25)")
    ap.add_argument("--min-lines", type=int, default=10, help="as bench flag (default 10)")
    ap.add_argument("--max-lines", type=int, default=40, help="as bench flag (default 40)")
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--classifier", default=None, help="flag classifier folder (default shipped)")
    ap.add_argument("--dtype", default="auto", help="in-process dtype (default auto)")
    ap.add_argument(
        "--stock", action="store_true", help="in-process: stock transformers, no fast decoder"
    )
    ap.add_argument("--threads", type=int, default=1, help="in-process torch threads (default 1)")
    ap.add_argument("--timeout-ms", type=int, default=defaults.timeout_ms, help="engine.timeoutMs")
    ap.add_argument(
        "--max-concurrent", type=int, default=defaults.max_concurrent, help="engine.maxConcurrent"
    )
    ap.add_argument("--out", default=None, help="also write the figures and records as JSON here")
    return ap.parse_args(list(argv))


def _backends(args: argparse.Namespace) -> tuple[Any, Any]:
    """(in-process, engine): the embedded model loaded as ``bench flag`` loads it, and the
    routing backend the server builds for ``engine.url`` with no fallback."""
    from tactful import paths
    from tactful.backend.engine import open_engine
    from tactful.backend.hf import TransformersBackend
    from tactful.config import EngineSettings
    from tactful.flags.datasets import set_threads

    settings = EngineSettings(
        url=args.url,
        model=args.engine_model,
        timeout_ms=args.timeout_ms,
        max_concurrent=args.max_concurrent,
        on_unreachable="none",
    )
    engine = open_engine(settings, None, notify=lambda m: print(f"engine: {m}", file=sys.stderr))
    if engine.serving != "engine":
        engine.close()
        raise SystemExit(f"tactful bench flag_engine: no engine: {engine.last_error}")
    local = TransformersBackend.load(
        None, cache_dir=paths.cache_dir(), dtype=args.dtype, fast_decode=not args.stock
    )
    set_threads(args.threads)
    return local, engine


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    programs = heldout_programs(args.n, args.min_lines, args.max_lines)
    model = FlagModel.load(args.classifier)
    local, engine = _backends(args)
    http = count_http(engine)
    t0 = time.time()
    try:
        records = _flag_both(
            {"in_process": local, "engine": engine},
            programs,
            model,
            args.budget,
            lambda: {**engine.engine.stats, "http": sum(http.values())},
        )
    finally:
        engine.close()
    report = {
        "set": f"ConDefects python heldout, {args.min_lines} <= n_lines <= {args.max_lines}, "
        f"first {args.n} by id",
        "budget": args.budget,
        "classifier": model.name,
        "in_process_backend": f"{local.name} ({str(local.model.dtype).removeprefix('torch.')}, "
        + ("fast decoder" if local.fast is not None else "stock transformers")
        + f", {args.threads} torch thread(s))",
        "engine_backend": f"{engine.engine.name} (timeoutMs {args.timeout_ms}, "
        f"maxConcurrent {args.max_concurrent})",
        **{side: side_summary(records[side]) for side in SIDES},
        "agreement": agreement(records["in_process"], records["engine"]),
        "engine_http_requests_by_path": dict(sorted(http.items())),
        "wall_seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({**report, "records": records}, indent=2) + "\n")
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    """The two sides side by side, then their agreement."""
    rows = [
        ("programs (failed)", lambda s: f"{s['programs']} ({s['failed']})"),
        ("recall at budget", lambda s: f"{s['recall_at_budget']:.3f} ({s['recall_ratio']}x)"),
        ("random recall", lambda s: f"{s['random_recall']:.3f}"),
        ("top-3", lambda s: f"{s['top3']:.3f} ({s['top3_ratio']}x)"),
        ("s/100 lines pooled", lambda s: f"{s['seconds_per_100_lines']}"),
        (
            "s/100 lines p50 / p95",
            lambda s: f"{s['seconds_per_100_lines_p50']} / {s['seconds_per_100_lines_p95']}",
        ),
        (
            "regenerated (model calls)",
            lambda s: f"{s['regenerated']} ({s['regenerated_by_the_model']})",
        ),
        (
            "completions req. (failed)",
            lambda s: f"{s.get('requests', '-')} ({s.get('failed_requests', '-')})",
        ),
        ("HTTP requests", lambda s: f"{s.get('http_requests', '-')}"),
    ]
    print(f"{'':24}{'in-process':>22}{'engine':>22}")
    for label, cell in rows:
        vals = [
            cell(report[side]) if report[side]["programs"] or label.startswith("programs") else "-"
            for side in SIDES
        ]
        print(f"{label:24}{vals[0]:>22}{vals[1]:>22}")
    ag = report["agreement"]
    if ag["programs"]:
        print(
            f"agreement on {ag['programs']} programs: identical flag sets {ag['identical_flag_sets']}, "
            f"mean Jaccard {ag['mean_jaccard']}, pooled overlap {ag['pooled_overlap']} "
            f"(chance {ag['chance_overlap']}), same bug outcome {ag['same_bug_outcome']}"
        )
