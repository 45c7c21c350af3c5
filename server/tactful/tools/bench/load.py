"""``tactful bench load``: N simulated editors against one inference engine, side by side with N
in-process servers on the same machine.

Each simulated editor is its own ``tactful serve`` process, driven over stdio as
``tactful bench latency`` drives one: it opens a real source file (by default a module of
Python's standard library; each editor a different stretch) and types it a key at a time at a
human pace, a ``didChange`` and an inline completion request per key, cancelling the previous
request. For each N (``--editors 1,4``, e.g. ``1,4,16``) two rounds run, one after the other:

- **engine**: the N servers send their completions to one engine (``engine.url``, with
  ``engine.onUnreachable: "none"`` so that nothing is answered by an embedded model in
  disguise); the engine is the one at ``--url``, or a vLLM this command starts (``--vllm``, in
  its own process group, stopped at the end);
- **in-process**: N servers with no engine, each with its own embedded model.

Per round: keystroke-to-answer p50/p95 (from the request to its answer; requests cancelled by
the next key are counted, not timed), completions per second (answers with a suggestion,
all editors together, over the round's typing time), the engine's requests in flight (vLLM's
``vllm:num_requests_running`` and ``vllm:num_requests_waiting``, polled every 100 ms, where the
engine exports them) and the most requests one server had in flight at the engine; then the
ratio engine / in-process of each. Bounded: a fixed number of keys per editor (``--keys``) and a
time cap per round (``--cap-s``); loopback only; every process group started is killed at the
end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tactful.tools import lspclient
from tactful.tools.bench.common import (
    add_json_option,
    add_typing_options,
    completion_only,
    latency_figures,
    private_cache_dir,
    stdlib_files,
)
from tactful.tools.bench.latency import RunResult, Typing, pick_sessions, type_session
from tactful.tools.lspclient import as_dict
from tactful.tools.vllm import kill_group, start_vllm, wait_engine

DEFAULT_FILES = ["textwrap.py", "shlex.py", "fractions.py", "argparse.py", "difflib.py"]
METRIC_RUNNING = "vllm:num_requests_running"
METRIC_WAITING = "vllm:num_requests_waiting"


# ---------------------------------------------------------------- pure helpers (unit-tested)


def parse_editors(text: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]``: positive, at most 64, no repeats, in the order given."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of editors: {part!r}") from None
        if not 1 <= n <= 64:
            raise argparse.ArgumentTypeError(f"editors must be between 1 and 64, not {n}")
        if n in out:
            raise argparse.ArgumentTypeError(f"{n} editors given twice")
        out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("no number of editors given")
    return out


def parse_metric(text: str, name: str) -> float | None:
    """The sum of a Prometheus gauge over its labels in ``/metrics`` text; None when absent."""
    vals: list[float] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                vals.append(float(line.rsplit(" ", 1)[1]))
            except (IndexError, ValueError):
                continue
    return sum(vals) if vals else None


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is http(s) to this machine (the benchmark talks to nothing else)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")


def engine_root(url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (where vLLM serves ``/metrics``)."""
    return url.rstrip("/").removesuffix("/v1")


@dataclass
class Round:
    """One round: N editors, engine or in-process."""

    mode: str
    editors: int
    results: list[RunResult] = field(default_factory=list)
    wall_s: float = 0.0
    capped: bool = False
    #: (running, waiting) samples of the engine's metrics during the typing.
    samples: list[tuple[float, float | None]] = field(default_factory=list)
    start_s: float = 0.0
    error: str | None = None


def _round1(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def aggregate(r: Round) -> dict[str, Any]:
    """The figures of one round, all editors together."""
    lat = [x for res in r.results for x in res.latencies_ms]
    answered = len(lat)
    shown = sum(res.with_suggestion for res in r.results)
    backend = [res.status.get("backend", {}) or {} for res in r.results]
    max_inflight = [
        int(b["engine_max_in_flight"])
        for b in backend
        if isinstance(b, dict) and b.get("engine_max_in_flight") is not None
    ]
    counters = [res.status.get("stats", {}) or {} for res in r.results]

    def total(key: str) -> int:
        return sum(int(c.get(key, 0) or 0) for c in counters if isinstance(c, dict))

    model = [res.status.get("modelLatency", {}) or {} for res in r.results]
    model_p50 = [float(m["p50Ms"]) for m in model if isinstance(m, dict) and m.get("p50Ms")]
    model_p95 = [float(m["p95Ms"]) for m in model if isinstance(m, dict) and m.get("p95Ms")]
    running = [s[0] for s in r.samples]
    waiting = [s[1] for s in r.samples if s[1] is not None]
    return {
        "mode": r.mode,
        "editors": r.editors,
        "keys": sum(res.requests for res in r.results),
        "answered": answered,
        "with_suggestion": shown,
        "cancelled_or_superseded": sum(res.cancelled for res in r.results),
        "model_calls": total("model_calls"),
        "model_calls_cancelled": total("cancelled"),
        "type_along": total("type_along"),
        "cache_hits": total("cache_hits"),
        **latency_figures(lat),
        "server_model_p50_ms_median": _round1(statistics.median(model_p50)) if model_p50 else None,
        "server_model_p95_ms_max": _round1(max(model_p95)) if model_p95 else None,
        "typing_s": round(r.wall_s, 2),
        "completions_per_s": round(shown / r.wall_s, 2) if r.wall_s > 0 else None,
        "answers_per_s": round(answered / r.wall_s, 2) if r.wall_s > 0 else None,
        "engine_running_max": max(running) if running else None,
        "engine_running_mean": _round1(statistics.fmean(running), 2) if running else None,
        "engine_waiting_max": max(waiting) if waiting else None,
        "metric_samples": len(running),
        "max_in_flight_per_server": max(max_inflight) if max_inflight else None,
        "engine_requests": sum(int(b.get("engine_requests", 0) or 0) for b in backend)
        if r.mode == "engine"
        else None,
        "engine_failed": sum(int(b.get("engine_failed", 0) or 0) for b in backend)
        if r.mode == "engine"
        else None,
        "start_s": round(r.start_s, 1),
        "capped": r.capped,
        "error": r.error,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` to 3 significant digits; None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return float(f"{a / b:.3g}")


def compare(engine: dict[str, Any], local: dict[str, Any]) -> dict[str, float | None]:
    """Engine / in-process for the same N: latency (lower is better) and throughput."""
    return {
        "p50": ratio(engine["p50_ms"], local["p50_ms"]),
        "p95": ratio(engine["p95_ms"], local["p95_ms"]),
        "completions_per_s": ratio(engine["completions_per_s"], local["completions_per_s"]),
    }


def editor_typing(files: Sequence[Path], n: int, keys: int, seed: int) -> list[Typing]:
    """``n`` typing sessions of ``keys`` keys each, each from a different stretch (and, while
    there are enough, a different file)."""
    out: list[Typing] = []
    lines = max(3, keys // 15 + 2)
    for i in range(n):
        path = files[i % len(files)]
        got = pick_sessions([path], lines, seed + i)
        if not got:
            raise ValueError(f"no typable stretch in {path}")
        t = got[0]
        out.append(Typing(t.path, t.before, t.typed[:keys], t.after))
    return out


def _settings(engine_url: str | None, cache_dir: str, context_tokens: int) -> dict[str, Any]:
    s = completion_only(
        {"contextTokens": context_tokens, "debounceMs": 0, "multiline": False}, cacheDir=cache_dir
    )
    if engine_url is not None:
        s["engine"] = {"url": engine_url, "onUnreachable": "none"}
    return s


async def _sample(root: str, out: list[tuple[float, float | None]], stop: asyncio.Event) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=2) as http:
        while not stop.is_set():
            try:
                text = (await http.get(root + "/metrics")).text
            except httpx.HTTPError:
                text = ""
            running = parse_metric(text, METRIC_RUNNING)
            if running is None:
                return  # no vLLM metrics: nothing to sample
            out.append((running, parse_metric(text, METRIC_WAITING)))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)


@dataclass
class _Fleet:
    """The servers of a round as they start: their clients, and their process groups (each
    killed at the end of the round, whatever happens)."""

    clients: list[Any] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


async def _start_servers(
    fleet: _Fleet, n: int, tmp: Path, engine_url: str | None, context_tokens: int
) -> list[Any]:
    """Start ``n`` servers at once, each with its own cache folder in ``tmp`` and its own
    process group, and wait until every model is ready; their clients, in order."""

    async def one(i: int) -> tuple[Any, Any]:
        cache = private_cache_dir(tmp / f"e{i}")
        client, state = await lspclient.start(
            f"tactful-bench-load-{i}",
            lspclient.serve_cmd(),
            settings=_settings(engine_url, str(cache), context_tokens),
            start_new_session=True,
        )
        proc = getattr(client, "_server", None)
        if proc is not None:
            fleet.pids.append(proc.pid)
        fleet.clients.append(client)
        return client, state

    for i in range(n):
        (tmp / f"e{i}").mkdir()
    started = await asyncio.gather(*(one(i) for i in range(n)))
    for _, state in started:
        if not await lspclient.wait_ready(state, 300):
            raise RuntimeError(f"a server was not ready: {dict(state)}")
    return [client for client, _ in started]


async def _type_all(
    rnd: Round,
    clients: list[Any],
    sessions: list[Typing],
    engine_url: str | None,
    key_ms: float,
    seed: int,
    cap_s: float,
) -> None:
    """Every editor types its session at the same time (for at most ``cap_s``), while the
    engine's metrics are sampled; the figures go into ``rnd``."""
    rng_seed = random.Random(seed)
    rnd.results = [RunResult(f"{rnd.mode}-{i}") for i in range(len(sessions))]
    stop = asyncio.Event()
    sampler = (
        asyncio.ensure_future(_sample(engine_root(engine_url), rnd.samples, stop))
        if engine_url is not None
        else None
    )
    typing = [
        type_session(
            client,
            rnd.results[i],
            f"file:///bench/{i}-{Path(sessions[i].path).name}",
            sessions[i],
            key_ms,
            random.Random(rng_seed.random()),
        )
        for i, client in enumerate(clients)
    ]
    t1 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*typing), cap_s)
    except asyncio.TimeoutError:
        rnd.capped = True
    rnd.wall_s = time.perf_counter() - t1
    stop.set()
    if sampler is not None:
        await sampler


async def _collect_status(rnd: Round, clients: list[Any]) -> None:
    """Each server's ``tactful.status`` into its editor's result (left empty when it does not
    answer within 30 s)."""
    for i, client in enumerate(clients):
        with contextlib.suppress(Exception):
            st = await asyncio.wait_for(lspclient.status(client), 30)
            for key in ("backend", "stats", "modelLatency"):
                st[key] = as_dict(st.get(key, {}))
            rnd.results[i].status = st


async def _stop_all(clients: list[Any]) -> None:
    """Shut every server down, giving each 10 s per step (the process groups are killed after)."""
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_async(None), 10)
            client.exit(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 10)


async def run_round(
    mode: str,
    sessions: list[Typing],
    engine_url: str | None,
    key_ms: float,
    seed: int,
    cap_s: float,
    context_tokens: int,
) -> Round:
    """Start one server per session, type all sessions at once, collect the figures."""
    rnd = Round(mode, len(sessions))
    fleet = _Fleet()
    with tempfile.TemporaryDirectory(prefix="tactful-bench-load-") as tmp:
        try:
            t0 = time.perf_counter()
            clients = await _start_servers(
                fleet, len(sessions), Path(tmp), engine_url, context_tokens
            )
            rnd.start_s = time.perf_counter() - t0
            await _type_all(rnd, clients, sessions, engine_url, key_ms, seed, cap_s)
            await _collect_status(rnd, clients)
            await _stop_all(fleet.clients)
        except Exception as exc:  # a failed round is reported, the others still run
            rnd.error = f"{type(exc).__name__}: {exc}"
        finally:
            for pid in fleet.pids:
                kill_group(pid)
    return rnd


# ---------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tactful bench load", description=__doc__)
    add_typing_options(p)
    p.add_argument(
        "--editors",
        type=parse_editors,
        default=[1, 4],
        help="numbers of simulated editors, comma-separated (default 1,4; e.g. 1,4,16)",
    )
    p.add_argument("--keys", type=int, default=30, help="keys typed per editor (default 30)")
    p.add_argument("--cap-s", type=float, default=180, help="most typing time per round (180)")
    p.add_argument("--context-tokens", type=int, default=1500)
    p.add_argument("--url", default=None, help="a running engine's /v1 URL (loopback only)")
    p.add_argument(
        "--vllm",
        type=Path,
        default=Path(os.environ.get("VLLM_DIR", ".tools/vllm")),
        help="the vLLM venv to start when no --url is given (default $VLLM_DIR or .tools/vllm)",
    )
    p.add_argument("--engine-start-s", type=float, default=600, help="most time vLLM may take")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process rounds")
    p.add_argument("--no-engine", action="store_true", help="skip the engine rounds")
    add_json_option(p)
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(list(argv))
    if args.keys < 1:
        p.error("--keys must be at least 1")
    if args.cap_s <= 0:
        p.error("--cap-s must be positive")
    if args.url is not None and not is_loopback_url(args.url):
        p.error(f"--url must be a loopback http(s) URL (127.0.0.1, localhost, ::1): {args.url}")
    if args.no_in_process and args.no_engine:
        p.error("--no-in-process and --no-engine leave nothing to run")
    return args


def _print_table(rows: list[dict[str, Any]], ratios: dict[str, dict[str, Any]]) -> None:
    cols = [
        ("mode", "mode"),
        ("editors", "N"),
        ("keys", "keys"),
        ("answered", "answered"),
        ("with_suggestion", "shown"),
        ("model_calls", "model calls"),
        ("model_calls_cancelled", "cancelled"),
        ("type_along", "type-along"),
        ("p50_ms", "p50 ms"),
        ("p95_ms", "p95 ms"),
        ("server_model_p50_ms_median", "model p50"),
        ("completions_per_s", "compl/s"),
        ("engine_running_max", "running max"),
        ("engine_running_mean", "running mean"),
        ("engine_waiting_max", "waiting max"),
        ("max_in_flight_per_server", "in flight/server"),
        ("typing_s", "typing s"),
        ("capped", "capped"),
    ]
    print(" | ".join(h for _, h in cols))
    for r in rows:
        print(" | ".join(str(r[k]) if r[k] is not None else "-" for k, _ in cols))
        if r["error"]:
            print(f"  error: {r['error']}")
    for n, c in ratios.items():
        print(
            f"N={n}: engine / in-process: p50 {c['p50']}, p95 {c['p95']}, "
            f"completions/s {c['completions_per_s']}"
        )


def _launch_vllm(vllm: Path, log: Path) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    """Start vLLM from the venv ``vllm`` on the embedded model (converted for it); the process
    and its URL, or (None, None) after saying why it cannot start."""
    from tactful import paths
    from tactful.backend import embedded

    py = vllm / "bin" / "python"
    if not py.exists():
        print(f"tactful bench load: no vLLM at {py} (or give --url)", file=sys.stderr)
        return None, None
    model = embedded.converted_dir(paths.cache_dir(None))
    print(f"starting vLLM (log {log}) ...", file=sys.stderr)
    return start_vllm(py, model, log)


def _engine_ready(
    url: str, proc: subprocess.Popen[bytes] | None, start_s: float, log: Path
) -> bool:
    """Wait for the engine at ``url`` (at most ``start_s``); False after saying why not."""
    t = time.monotonic()
    why = wait_engine(url, proc, start_s)
    if why is not None:
        print(f"tactful bench load: {why} (log {log})", file=sys.stderr)
        return False
    if proc is not None:
        print(f"vLLM ready after {time.monotonic() - t:.0f} s", file=sys.stderr)
    return True


def _run_rounds(
    args: argparse.Namespace, files: list[Path], url: str | None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every round, N by N (engine, then in-process, unless skipped): their figures, and the
    ratios engine / in-process by N where both ran."""
    rows: list[dict[str, Any]] = []
    ratios: dict[str, dict[str, Any]] = {}
    skip = {"engine": args.no_engine, "in-process": args.no_in_process}
    modes = [m for m in ("engine", "in-process") if not skip[m]]
    for n in args.editors:
        sessions = editor_typing(files, n, args.keys, args.seed)
        by_mode: dict[str, dict[str, Any]] = {}
        for mode in modes:
            print(f"N={n} {mode}: typing {args.keys} keys per editor ...", file=sys.stderr)
            engine_url = url if mode == "engine" else None
            rnd = asyncio.run(
                run_round(
                    mode,
                    sessions,
                    engine_url,
                    args.key_ms,
                    args.seed,
                    args.cap_s,
                    args.context_tokens,
                )
            )
            by_mode[mode] = aggregate(rnd)
            rows.append(by_mode[mode])
        if len(by_mode) == 2:
            ratios[str(n)] = compare(by_mode["engine"], by_mode["in-process"])
    return rows, ratios


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    files = args.files or stdlib_files(DEFAULT_FILES)
    proc: subprocess.Popen[bytes] | None = None
    url = args.url
    log = Path(tempfile.gettempdir()) / f"tactful-bench-load-vllm-{os.getpid()}.log"
    ok = False
    try:
        if not args.no_engine and url is None:
            proc, url = _launch_vllm(args.vllm, log)
            if url is None:
                return 1
        if url is not None and not _engine_ready(url, proc, args.engine_start_s, log):
            return 1
        rows, ratios = _run_rounds(args, files, url)
        if args.json:
            report = {"engine_url": url, "rounds": rows, "engine_over_in_process": ratios}
            print(json.dumps(report, indent=2))
        else:
            _print_table(rows, ratios)
        ok = not any(r["error"] for r in rows)
        return 0 if ok else 1
    finally:
        if proc is not None:
            kill_group(proc.pid)
            if ok:  # kept when something failed, for the reason
                with contextlib.suppress(OSError):
                    log.unlink()
