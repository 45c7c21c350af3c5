"""``tactful bench engine --url URL``: completions through an inference engine side by side with
the in-process model, on the same machine and the same prompts.

The engine must serve the same model as the in-process backend (by default the embedded
SmolLM2-135M-Instruct, e.g. vLLM started as tests/engine/conftest.py does). For a fixed set of
real prompts (cut points in the standard library's ``textwrap.py`` and ``shlex.py``), each
backend writes a greedy single-line completion, one request at a time:

- parity: the share of prompts where both write the same text, for prompts that end after
  punctuation (no token healing), after a line's indentation (healed both ways) and inside a
  word (the in-process backend constrains the first token to fit it; an engine cannot), with the
  differing cases listed;
- latency: median and p95 of a request, engine and in-process, and the ratio of the medians;
- cancellation: how long after a cancel ``generate`` returns and, where the engine exports
  vLLM's metrics, how long until it has nothing running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tactful.backend.engine import EngineBackend, engine_root
from tactful.backend.types import Backend, GenerateRequest
from tactful.stats import percentile

#: The prompt kinds the parity is reported for ("all" and the three of ``prompts``).
KINDS = ("all", "punct", "indent", "heal")


def prompts(n: int) -> list[tuple[str, str]]:
    """(kind, prefix) pairs: ``punct`` cuts right after ``(``, ``[``, ``.`` or ``=`` inside a
    line; ``indent`` right after a line's indentation (healed in-process and through the
    engine); ``heal`` inside the line's first word (healed in-process only)."""
    import shlex

    out: list[tuple[str, str]] = []
    for mod in (textwrap, shlex):
        text = Path(str(mod.__file__)).read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        pos = 0
        for i, line in enumerate(lines):
            start = pos
            pos += len(line)
            body = line.strip()
            if i < 20 or not body or body.startswith(("#", '"', "'")):
                continue
            if i % 7 == 0:
                cut = next((k for k, ch in enumerate(line) if ch in "([.="), -1)
                if 0 < cut < len(line.rstrip()) - 1:
                    out.append(("punct", text[max(0, start + cut + 1 - 3000) : start + cut + 1]))
            elif i % 7 == 5:
                indent = len(line) - len(line.lstrip())
                if indent:
                    cut = start + indent
                    out.append(("indent", text[max(0, cut - 3000) : cut]))
            elif i % 7 == 3:
                indent = len(line) - len(line.lstrip())
                word = len(body.split()[0]) if body.split() else 0
                cut = start + indent + max(1, word // 2)
                out.append(("heal", text[max(0, cut - 3000) : cut]))
    third = n // 3
    punct = [p for p in out if p[0] == "punct"][:third]
    indents = [p for p in out if p[0] == "indent"][:third]
    heal = [p for p in out if p[0] == "heal"][: n - len(punct) - len(indents)]
    return punct + indents + heal


def _vllm_running(root: str) -> float | None:
    import httpx

    try:
        text = httpx.get(root + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    vals = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_running{")
    ]
    return sum(vals) if vals else None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tactful bench engine", description=__doc__)
    parser.add_argument("--url", required=True, help="the engine's /v1 URL")
    parser.add_argument("--engine-model", default=None, help="served model (default: the first)")
    parser.add_argument("--model", default=None, help="in-process model (default: embedded)")
    parser.add_argument("--dtype", default="auto", help="in-process dtype (default auto)")
    parser.add_argument(
        "--stock", action="store_true", help="in-process: stock transformers, no fast decoder"
    )
    parser.add_argument("--prompts", type=int, default=45, help="number of prompts (default 45)")
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens (default 16)")
    parser.add_argument("--cancels", type=int, default=5, help="cancellation trials (default 5)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(list(argv))


def measure_parity(
    engine: EngineBackend, local: Backend, cases: Sequence[tuple[str, str]], tokens: int
) -> list[dict[str, Any]]:
    """Per prompt: both backends' greedy single-line completion, whether they are the same,
    and each one's time (ms), one request at a time."""
    rows: list[dict[str, Any]] = []
    for kind, prefix in cases:
        kw: dict[str, Any] = dict(prefix=prefix, max_new_tokens=tokens, single_line=True)
        t = time.perf_counter()
        ours = local.generate(GenerateRequest(**kw))
        t_local = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        theirs = engine.generate(GenerateRequest(**kw))
        t_engine = (time.perf_counter() - t) * 1000
        rows.append(
            {
                "kind": kind,
                "end": prefix[-30:],
                "local": ours.text,
                "engine": theirs.text,
                "same": ours.text == theirs.text,
                "local_ms": t_local,
                "engine_ms": t_engine,
            }
        )
    return rows


def measure_cancel(engine: EngineBackend) -> dict[str, float | None]:
    """One long generation cancelled after 0.3 s: how many tokens came before, how long until
    its stream was closed, and (where the engine exports vLLM's metrics) until the engine had
    nothing running."""
    req = GenerateRequest(prefix="def fib(n):\n", single_line=False, max_new_tokens=1000)
    cancelled_at = [0.0]

    def cancel() -> None:
        cancelled_at[0] = time.perf_counter()
        req.cancel.set()

    threading.Timer(0.3, cancel).start()
    gen = engine.generate(req)
    returned = time.perf_counter()
    assert gen.cancelled
    while engine.last_stream_closed < cancelled_at[0] and time.perf_counter() - returned < 2:
        time.sleep(0.001)
    closed_ms = (engine.last_stream_closed - cancelled_at[0]) * 1000
    idle_ms = None
    root = engine_root(engine.base)
    while time.perf_counter() - returned < 5:
        running = _vllm_running(root)
        if running is None:
            break
        if running == 0:
            idle_ms = (time.perf_counter() - returned) * 1000
            break
        time.sleep(0.005)
    return {
        "tokens_before_cancel": len(gen.tokens),
        "stream_closed_after_ms": closed_ms,
        "engine_idle_after_ms": idle_ms,
    }


def _parity(rows: Sequence[dict[str, Any]], kind: str | None) -> dict[str, Any]:
    sel = [r for r in rows if kind is None or r["kind"] == kind]
    return {
        "prompts": len(sel),
        "same": sum(r["same"] for r in sel),
        "parity": round(sum(r["same"] for r in sel) / len(sel), 3) if sel else None,
    }


def _p50_max(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(statistics.median(values), 1), round(max(values), 1)


def build_report(
    engine_name: str,
    in_process: str,
    rows: Sequence[dict[str, Any]],
    cancels: Sequence[dict[str, float | None]],
) -> dict[str, Any]:
    """The figures: parity per prompt kind, latency side by side, cancellation, the differing
    completions."""
    loc = [r["local_ms"] for r in rows] or [float("nan")]
    eng = [r["engine_ms"] for r in rows] or [float("nan")]
    idle = [c["engine_idle_after_ms"] for c in cancels if c["engine_idle_after_ms"] is not None]
    closed = [
        c["stream_closed_after_ms"] for c in cancels if c["stream_closed_after_ms"] is not None
    ]
    closed_p50, closed_max = _p50_max(closed)
    idle_p50, idle_max = _p50_max(idle)
    return {
        "engine": engine_name,
        "in_process": in_process,
        "parity": {k: _parity(rows, None if k == "all" else k) for k in KINDS},
        "latency_ms": {
            "in_process_p50": round(statistics.median(loc), 1),
            "in_process_p95": round(percentile(loc, 95) or 0.0, 1),
            "engine_p50": round(statistics.median(eng), 1),
            "engine_p95": round(percentile(eng, 95) or 0.0, 1),
            "ratio_engine_over_in_process_p50": round(
                statistics.median(eng) / statistics.median(loc), 2
            ),
        },
        "cancel": {
            "trials": len(cancels),
            "stream_closed_after_ms_p50": closed_p50,
            "stream_closed_after_ms_max": closed_max,
            "engine_idle_after_ms_p50": idle_p50,
            "engine_idle_after_ms_max": idle_max,
        },
        "differing": [
            {k: r[k] for k in ("kind", "end", "local", "engine")} for r in rows if not r["same"]
        ],
    }


def print_report(report: dict[str, Any]) -> None:
    p = report["parity"]
    lat = report["latency_ms"]
    print(f"engine {report['engine']}  vs  in-process {report['in_process']}")
    for k in KINDS:
        s = p[k]
        print(f"  parity {k:5s}: {s['same']}/{s['prompts']} = {s['parity']}")
    print(
        f"  latency ms: engine p50 {lat['engine_p50']} p95 {lat['engine_p95']}; in-process p50 "
        f"{lat['in_process_p50']} p95 {lat['in_process_p95']}; ratio "
        f"{lat['ratio_engine_over_in_process_p50']}"
    )
    c = report["cancel"]
    print(
        f"  cancel: stream closed after p50 {c['stream_closed_after_ms_p50']} ms, max "
        f"{c['stream_closed_after_ms_max']} ms; engine idle after p50 "
        f"{c['engine_idle_after_ms_p50']} ms, max {c['engine_idle_after_ms_max']} ms "
        f"({c['trials']} trials)"
    )
    for d in report["differing"]:
        print(
            f"  differs [{d['kind']}] ...{d['end']!r}: local {d['local']!r} engine {d['engine']!r}"
        )
    sys.stdout.flush()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    from tactful import paths
    from tactful.backend.hf import TransformersBackend

    engine = EngineBackend(args.url, model=args.engine_model, timeout_s=120)
    engine.connect()
    local = TransformersBackend.load(
        args.model, cache_dir=paths.cache_dir(None), dtype=args.dtype, fast_decode=not args.stock
    )
    cases = prompts(args.prompts) if args.prompts > 0 else []
    rows = measure_parity(engine, local, cases, args.tokens)
    cancels = [measure_cancel(engine) for _ in range(args.cancels)]
    engine.close()
    in_process = (
        f"{local.name} ({str(local.model.dtype).removeprefix('torch.')}, "
        + ("fast decoder" if local.fast is not None else "stock transformers")
        + ")"
    )
    report = build_report(engine.name, in_process, rows, cancels)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0
