"""``tactful bench fallback``: how soon the server answers from the embedded model after its
inference engine dies or hangs, and how long a request can wait on a dead engine (issue 23:
"the server keeps answering within 1 s of the engine dying, and no request waits past the
engine timeout").

No vLLM needed: the engine is a stand-in process (``_fake_engine.py``) that serves ``/v1/models``
and streamed ``/v1/completions`` like one, writing a completion the embedded model would never
write (``engine_answer(a, b)``), one token every ``--token-ms``. The server is the real
``tactful serve`` over stdio, as an editor drives it, with ``engine.url`` set to the stand-in and
``engine.onUnreachable: "fallback"`` (the embedded model, loaded at start, answers while the
engine is away). Each trial:

1. the engine serves (a request is answered with its text; between trials the server's circuit
   breaker has to find it back, which is timed as the recovery);
2. an inline completion request is sent; once the engine has started streaming it and written a
   couple of tokens, its process is killed (``kill``: SIGKILL, its sockets close) or frozen
   (``hang``: SIGSTOP, its sockets stay open and silent);
3. timed from that moment: the answer to the request in flight (which backend wrote it), then
   one more request (the next keystroke) answered while the engine is away;
4. the engine process is killed and a fresh one started on the same port.

Settings: ``completion.deadlineMs: 0`` (each answer is one backend's whole suggestion, not the
engine's words so far), no completion cache, each request on a new document (no type-along),
flags, cascade, feedback and context off. Printed: per mode, median, p95 and max of the time
from the engine's death to the server's answer, the whole request's time against
``engine.timeoutMs``, the next request's time (the fallback's own answer time: the baseline),
which backend answered, and the time until the engine served again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pygls.exceptions import JsonRpcException

from tactful.stats import percentile
from tactful.tools.bench._fake_engine import MARK

#: The document every request is made in (a fresh URI each time), and where.
DOC = "def add(a, b):\n    return"
POS = (1, len("    return"))
MODES = ("kill", "hang", "typing")
#: What the server says when it starts serving from the fallback.
FALLBACK_SAYS = "serving from the embedded model"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tactful bench fallback", description=__doc__)
    p.add_argument("--trials", type=int, default=10, help="trials with the engine killed (10)")
    p.add_argument("--hang-trials", type=int, default=3, help="trials with it frozen (3)")
    p.add_argument("--timeout-ms", type=int, default=10000, help="engine.timeoutMs (10000)")
    p.add_argument(
        "--typing-trials", type=int, default=3, help="trials frozen while typing goes on (3)"
    )
    p.add_argument("--key-ms", type=float, default=150, help="time between keys when typing (150)")
    p.add_argument("--token-ms", type=float, default=100, help="the engine's time per token (100)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(list(argv))
    counts = (args.trials, args.hang_trials, args.typing_trials)
    if min(counts) < 0 or sum(counts) == 0:
        p.error("--trials, --hang-trials, --typing-trials: not negative, and not all 0")
    return args


class EngineProcess:
    """The stand-in engine's process: started on a fixed port, killed or frozen on demand; the
    ``stream`` lines it prints are counted."""

    def __init__(self, port: int, token_ms: float) -> None:
        self.port = port
        self.token_ms = token_ms
        self.proc: asyncio.subprocess.Process | None = None
        self.streams = 0
        self._streamed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Start a fresh engine process and wait until it listens."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tactful.tools.bench._fake_engine",
            str(self.port),
            str(self.token_ms),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"the stand-in engine did not start: {line!r}")
        self._reader = asyncio.ensure_future(self._read(self.proc.stdout))

    async def _read(self, out: asyncio.StreamReader) -> None:
        while line := await out.readline():
            if line.strip() == b"stream":
                self.streams += 1
                self._streamed.set()

    async def wait_stream(self, seen: int, timeout: float) -> None:
        """Wait until more than ``seen`` streams were started."""
        end = time.monotonic() + timeout
        while self.streams <= seen:
            self._streamed.clear()
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError("the server did not send the request to the engine")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._streamed.wait(), left)

    def die(self, mode: str) -> None:
        """``kill``: SIGKILL (the process is gone, the kernel closes its sockets); ``hang``:
        SIGSTOP (it accepts nothing more and its open streams fall silent)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL if mode == "kill" else signal.SIGSTOP)

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        self.proc = None


class Editor:
    """The real server over stdio, asked for inline completions as an editor asks."""

    def __init__(self, client: Any, messages: list[tuple[float, str]]) -> None:
        self.client = client
        self.docs = 0
        #: What the server showed (window/showMessage), with when (perf_counter).
        self.messages = messages

    async def ask(self) -> tuple[float, str | None]:
        """(ms, text): one inline completion request in a new document, its time and its first
        suggestion (None: no suggestion)."""
        from lsprotocol import types

        self.docs += 1
        uri = f"file:///bench/fallback-{self.docs}.py"
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, DOC))
        )
        t0 = time.perf_counter()
        try:
            out = await self.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(*POS),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic
                    ),
                )
            )
        except JsonRpcException:  # cancelled by the next keystroke
            return (time.perf_counter() - t0) * 1000, None
        ms = (time.perf_counter() - t0) * 1000
        items = out.items if isinstance(out, types.InlineCompletionList) else out
        if not items:
            return ms, None
        first = items[0].insert_text
        return ms, first if isinstance(first, str) else first.value

    def cancel_pending(self) -> None:
        """Cancel the requests in flight, as an editor does on the next keystroke."""
        from lsprotocol import types

        futures = self.client.protocol._request_futures
        for i in [i for i, f in futures.items() if not f.done()]:
            self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=i))

    async def type_until_fallback(self, key_ms: float, limit_s: float) -> tuple[float | None, int]:
        """Keep typing (a request every ``key_ms``, cancelling the one before, as an editor
        does) until the server says it serves from the fallback: (seconds, or None within
        ``limit_s``; keys typed)."""
        t0 = time.perf_counter()
        told = len(self.messages)
        keys = 0
        pending: asyncio.Future[tuple[float, str | None]] | None = None
        while time.perf_counter() - t0 < limit_s:
            if any(FALLBACK_SAYS in m for _, m in self.messages[told:]):
                break
            if pending is not None and not pending.done():
                self.cancel_pending()
            pending = asyncio.ensure_future(self.ask())
            keys += 1
            await asyncio.sleep(key_ms / 1000)
        said = [t for t, m in self.messages[told:] if FALLBACK_SAYS in m]
        if pending is not None:
            self.cancel_pending()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pending, 60)
        return (said[0] - t0 if said else None), keys

    async def until_engine(self, limit_s: float) -> float:
        """Ask until the engine writes the answer; the seconds it took."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < limit_s:
            _, text = await self.ask()
            if text is not None and MARK in text:
                return time.perf_counter() - t0
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the server did not serve from the engine again within {limit_s:g} s")


def who(text: str | None) -> str:
    """Which backend wrote an answer: ``engine``, ``fallback`` or ``none`` (no suggestion)."""
    if text is None:
        return "none"
    return "engine" if MARK in text else "fallback"


async def trial(
    editor: Editor,
    engine: EngineProcess,
    mode: str,
    token_ms: float,
    key_ms: float = 150,
    limit_s: float = 60,
) -> dict[str, Any]:
    """One death of the engine mid-stream, timed (see the module's docstring); the engine is
    serving when it starts and again when it ends."""
    seen = engine.streams
    t_sent = time.perf_counter()
    in_flight = asyncio.ensure_future(editor.ask())
    await engine.wait_stream(seen, 30)
    await asyncio.sleep(2.5 * token_ms / 1000)  # a couple of tokens written
    t_die = time.perf_counter()
    engine.die("hang" if mode == "typing" else mode)
    if mode == "typing":
        # The request in flight is cancelled by the next key, and so on, until the server
        # says that it serves from the fallback; then the user pauses and gets an answer.
        said_s, keys = await editor.type_until_fallback(key_ms, limit_s)
        _, text = await editor.ask()
        by = who(text)
        t_answer = time.perf_counter()
    else:
        _, text = await in_flight
        by, keys, said_s = who(text), 0, None
        t_answer = time.perf_counter()
    next_ms, next_text = await editor.ask()
    await engine.stop()
    await engine.start()
    recovered_s = await editor.until_engine(120)
    return {
        "mode": mode,
        "death_to_answer_ms": (t_answer - t_die) * 1000,
        "request_ms": (t_answer - t_sent) * 1000,
        "answered_by": by,
        "keys": keys,
        "told_fallback_s": said_s,
        "next_ms": next_ms,
        "next_answered_by": who(next_text),
        "recovered_s": recovered_s,
    }


def _settings(url: str, cache_dir: str, timeout_ms: int) -> dict[str, Any]:
    return {
        "completion": {"debounceMs": 0, "deadlineMs": 0, "multiline": False, "cache": False},
        "flags": {"enable": False},
        "cdhf": {"enable": False},
        "feedback": {"enable": False},
        "context": {"enable": False},
        "cacheDir": cache_dir,
        "engine": {"url": url, "timeoutMs": timeout_ms, "onUnreachable": "fallback"},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the engine and the server, run the trials, stop both."""
    from tactful.tools import lspclient
    from tactful.tools.bench.latency import private_cache_dir
    from tactful.tools.vllm import free_port, kill_group

    engine = EngineProcess(free_port(), args.token_ms)
    messages: list[tuple[float, str]] = []
    trials: list[dict[str, Any]] = []
    pid = None
    with tempfile.TemporaryDirectory(prefix="tactful-bench-fallback-") as tmp:
        try:
            await engine.start()
            client, state = await lspclient.start(
                "tactful-bench-fallback",
                [str(Path(sys.executable).parent / "tactful"), "serve"],
                settings=_settings(engine.url, str(private_cache_dir(Path(tmp))), args.timeout_ms),
                on_message=lambda m: messages.append((time.perf_counter(), m.message)),
                start_new_session=True,
            )
            pid = getattr(getattr(client, "_server", None), "pid", None)
            t0 = time.perf_counter()
            if not await lspclient.wait_ready(state, 600):
                raise RuntimeError(f"the server was not ready: {dict(state)}")
            ready_s = time.perf_counter() - t0
            editor = Editor(client, messages)
            await editor.until_engine(120)
            plan = (
                ["kill"] * args.trials
                + ["hang"] * args.hang_trials
                + ["typing"] * args.typing_trials
            )
            limit_s = args.timeout_ms / 1000 + 20
            for mode in plan:
                trials.append(
                    await trial(editor, engine, mode, args.token_ms, args.key_ms, limit_s)
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown_async(None), 10)
                client.exit(None)
        finally:
            await engine.stop()
            if pid is not None:
                kill_group(pid)
    return build_report(trials, [m for _, m in messages], args, ready_s)


def _spread(values: Sequence[float], digits: int = 0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(statistics.median(values), digits),
        "p95": round(percentile(list(values), 95) or 0.0, digits),
        "max": round(max(values), digits),
    }


def build_report(
    trials: Sequence[dict[str, Any]],
    messages: Sequence[str],
    args: argparse.Namespace,
    ready_s: float,
) -> dict[str, Any]:
    """Per mode: the spreads of the timings and who answered; the messages the server showed."""
    modes: dict[str, Any] = {}
    for mode in MODES:
        sel = [t for t in trials if t["mode"] == mode]
        if not sel:
            continue
        modes[mode] = {
            "trials": len(sel),
            "death_to_answer_ms": _spread([t["death_to_answer_ms"] for t in sel]),
            "request_ms": _spread([t["request_ms"] for t in sel]),
            "next_request_ms": _spread([t["next_ms"] for t in sel]),
            "answered_by": {
                k: sum(t["answered_by"] == k for t in sel) for k in ("fallback", "engine", "none")
            },
            "next_answered_by_fallback": sum(t["next_answered_by"] == "fallback" for t in sel),
            "back_to_engine_s": _spread([t["recovered_s"] for t in sel], 1),
            "keys_typed": _spread([t["keys"] for t in sel]),
            "told_fallback_after_s": [
                None if t["told_fallback_s"] is None else round(t["told_fallback_s"], 2)
                for t in sel
            ],
        }
    return {
        "timeout_ms": args.timeout_ms,
        "token_ms": args.token_ms,
        "key_ms": args.key_ms,
        "server_ready_s": round(ready_s, 1),
        "modes": modes,
        "messages": len(messages),
        "first_messages": list(messages[:4]),
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"tactful bench fallback: engine.timeoutMs {report['timeout_ms']}, the engine writes a "
        f"token every {report['token_ms']:g} ms; server ready after {report['server_ready_s']} s"
    )
    what = {
        "kill": "killed mid-stream",
        "hang": "frozen mid-stream",
        "typing": f"frozen mid-stream, typing on (a key every {report['key_ms']:g} ms)",
    }
    for mode, m in report["modes"].items():
        d, r, n = m["death_to_answer_ms"], m["request_ms"], m["next_request_ms"]
        by = m["answered_by"]
        print(f"  engine {what[mode]} ({m['trials']} trials):")
        print(
            f"    death to answer ms: p50 {d['p50']}  p95 {d['p95']}  max {d['max']}; answered by "
            f"the fallback {by['fallback']}, the engine {by['engine']}, nothing {by['none']}"
        )
        if mode == "typing":
            k = m["keys_typed"]
            print(
                f"    the server said it serves from the fallback after s (typing): "
                f"{m['told_fallback_after_s']}; keys typed: p50 {k['p50']}  max {k['max']}"
            )
        else:
            print(f"    the request in flight took ms: p50 {r['p50']}  max {r['max']}")
        print(
            f"    the next request ms (the fallback's own time): p50 {n['p50']}  p95 {n['p95']}  "
            f"max {n['max']}; by the fallback {m['next_answered_by_fallback']}/{m['trials']}"
        )
        b = m["back_to_engine_s"]
        print(f"    served by the engine again after s: p50 {b['p50']}  max {b['max']}")
    print(f"  messages shown: {report['messages']}")
    for msg in report["first_messages"]:
        print(f"    {msg}")
    sys.stdout.flush()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0
