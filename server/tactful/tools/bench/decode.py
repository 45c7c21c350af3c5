"""``tactful bench decode``: the cost of one decoding step, fast path against stock transformers.

Loads the model twice in one process (``fastDecode`` on, then off), prefills real source text
(the standard library's ``textwrap.py``) to each context length, and times single-token
decoding steps and a short prefill of a few typed tokens. Prints the median and p95 per
context length and the ratio stock / fast. This is the per-token cost behind a model-answered
completion; ``tactful bench latency`` measures the whole keystroke-to-answer path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tactful.tools.bench.common import add_json_option, ms


def measure(backend: Any, ids: list[int], contexts: Sequence[int], steps: int) -> dict[str, Any]:
    torch = backend._torch
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for ctx in contexts:
            cache = backend._new_cache()
            pos = 0
            while pos < ctx:  # prefill as the backend does, in chunks
                chunk = ids[pos : min(ctx, pos + 256)]
                backend._forward(chunk, cache)
                pos += len(chunk)
            token = ids[ctx]
            times = []
            for _ in range(steps + 2):
                t = time.perf_counter()
                logits = backend._forward([token], cache, decode=True)
                times.append((time.perf_counter() - t) * 1000)
                token = int(logits.argmax())
            times = times[2:]  # warm-up
            out[str(ctx)] = {
                "step_p50_ms": round(statistics.median(times), 1),
                "step_p95_ms": ms(times, 95),
            }
    return out


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="tactful bench decode", description=__doc__)
    parser.add_argument(
        "--contexts",
        default="200,1000,1500",
        help="comma-separated context lengths in tokens (default 200,1000,1500)",
    )
    parser.add_argument("--steps", type=int, default=24, help="decoding steps per context")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    add_json_option(parser)
    args = parser.parse_args(list(argv))
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.backend.types import ModelError

    text = Path(textwrap.__file__).read_text() * 2
    runs: dict[str, Any] = {}
    for name, fast in (("fast", True), ("stock", False)):
        try:
            backend = TransformersBackend.load(
                None, cache_dir=paths.cache_dir(), threads=args.threads, fast_decode=fast
            )
        except ModelError as exc:
            print(f"tactful bench decode: {exc}", file=sys.stderr)
            return 1
        if fast and backend.fast is None:
            print("tactful bench decode: the fast path does not apply here", file=sys.stderr)
            return 1
        ids = backend.encode(text)
        if max(contexts) >= len(ids):
            print("tactful bench decode: context longer than the sample text", file=sys.stderr)
            return 2
        print(f"measuring {name} decoding ...", file=sys.stderr)
        runs[name] = measure(backend, ids, contexts, args.steps)
        del backend
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    print(
        f"{'context':>8} {'fast p50':>9} {'fast p95':>9} {'stock p50':>10} {'stock p95':>10} {'ratio':>6}"
    )
    for ctx in contexts:
        f, s = runs["fast"][str(ctx)], runs["stock"][str(ctx)]
        ratio = s["step_p50_ms"] / f["step_p50_ms"] if f["step_p50_ms"] else float("nan")
        print(
            f"{ctx:>8} {f['step_p50_ms']:>9} {f['step_p95_ms']:>9} "
            f"{s['step_p50_ms']:>10} {s['step_p95_ms']:>10} {ratio:>5.2f}x"
        )
    print("(milliseconds per generated token, one decoding step)")
    return 0
