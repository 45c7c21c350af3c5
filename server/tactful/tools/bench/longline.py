"""``tactful bench longline [--trials N] [--kb 30]``: one pathological document must not hold up
the others (issue 28).

With the real embedded model over stdio: a small document B is completed alone (the baseline,
measured in the same run), then a single-line document A of ``--kb`` KB (digits, minified code,
emoji: one token per character or worse) is opened and completed, and B is asked 50 ms later.
Printed: A's answer time alone and with B behind it, B's answer time behind A, and B's delay
against its baseline (medians and maxima). Targets: A answered within 2 s, B delayed by at most 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tactful.tools.bench.peer import Peer, frame, start

SMALL = "import os\n\n\ndef list_python_files(folder):\n    out = []\n    for name in os.listdir(folder):\n        "


def _long(kind: str, kb: int, trial: int) -> str:
    n = kb * 1024
    if kind == "digits":
        return ("3141592653589793238462643383279502884197" * (n // 40 + 1))[:n] + f"{trial}"
    if kind == "minified":
        return ("var a=function(b,c){return b+c};" * (n // 33 + 1))[:n] + f"var t{trial}="
    return ("😀漢" * (n // 7 + 1))[: n // 3] + f" x{trial} = "


def _open(peer: Peer, uri: str, text: str, version: int) -> None:
    msg = {
        "jsonrpc": "2.0",
        "method": "textDocument/didOpen",
        "params": {
            "textDocument": {"uri": uri, "languageId": "python", "version": version, "text": text}
        },
    }
    peer.send(frame(json.dumps(msg).encode()))


def _ask(peer: Peer, msg_id: str, uri: str, text: str) -> None:
    lines = text.split("\n")
    pos = {"line": len(lines) - 1, "character": len(lines[-1].encode("utf-16-le")) // 2}
    msg = {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": "textDocument/inlineCompletion",
        "params": {"textDocument": {"uri": uri}, "position": pos, "context": {"triggerKind": 1}},
    }
    peer.send(frame(json.dumps(msg).encode()))


def _timed(peer: Peer, msg_id: str, t0: float, out: dict[str, float], timeout: float) -> None:
    r = peer.wait([msg_id], timeout)
    out[msg_id] = time.perf_counter() - t0 if msg_id in r else float("inf")


def _alone(peer: Peer, msg_id: str, uri: str, text: str, timeout: float) -> float:
    """Open ``uri`` and time one completion at its end, with nothing else asked."""
    _open(peer, uri, text, 1)
    t0 = time.perf_counter()
    _ask(peer, msg_id, uri, text)
    got = peer.wait([msg_id], timeout)
    return time.perf_counter() - t0 if got else float("inf")


def _trial(peer: Peer, kind: str, trial: int, kb: int, timeout: float) -> dict[str, float]:
    """One trial for one kind of long line: B alone (the baseline), A alone, then A with B
    asked 50 ms later; the answer times in seconds (inf when not answered in ``timeout``)."""
    k = f"{trial}-{kind}"
    b_text = SMALL + f"# {k}\n        "
    b_uri = f"file:///bench/b-{k}.py"
    base = _alone(peer, f"base-{k}", b_uri, b_text, timeout)
    alone_text = _long(kind, kb, trial + 1000)
    alone = _alone(peer, f"alone-{k}", f"file:///bench/alone-{k}.py", alone_text, timeout)
    b_text2 = b_text + "# again\n        "
    _open(peer, b_uri + "2", b_text2, 1)
    a_text = _long(kind, kb, trial)
    a_uri = f"file:///bench/a-{k}.py"
    _open(peer, a_uri, a_text, 1)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    _ask(peer, f"A-{k}", a_uri, a_text)
    th = threading.Thread(target=_timed, args=(peer, f"A-{k}", t0, times, timeout))
    th.start()
    time.sleep(0.05)
    t1 = time.perf_counter()
    _ask(peer, f"B-{k}", b_uri + "2", b_text2)
    _timed(peer, f"B-{k}", t1, times, timeout)
    th.join()
    print(
        f"{k}: A {times[f'A-{k}']:.2f} s, B {times[f'B-{k}']:.2f} s (alone {base:.2f} s)",
        file=sys.stderr,
    )
    return {
        "baselineB": base,
        "aloneA": alone,
        "A": times[f"A-{k}"],
        "B": times[f"B-{k}"],
        "delayB": times[f"B-{k}"] - base,
    }


def _summary(xs: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(xs), 3), "max": round(max(xs), 3)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="tactful bench longline", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--kb", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tactful-longline-"))
    # no persistent completion cache: it outlives the run, and a hit would time nothing
    peer = start(tmp / "data", tmp / "server.log", True, {"completion": {"cache": False}})
    results: dict[str, list[float]] = {k: [] for k in ("baselineB", "aloneA", "A", "B", "delayB")}
    try:
        # warm-up: the first request of a process pays one-time costs
        _open(peer, "file:///bench/warm.py", SMALL, 1)
        _ask(peer, "warm", "file:///bench/warm.py", SMALL)
        peer.wait(["warm"], args.timeout)
        for trial in range(args.trials):
            for kind in ("digits", "minified", "emoji"):
                for key, value in _trial(peer, kind, trial, args.kb, args.timeout).items():
                    results[key].append(value)
    finally:
        peer.close()
    print(
        json.dumps(
            {
                "kb": args.kb,
                "runs": len(results["A"]),
                **{k: _summary(v) for k, v in results.items()},
            },
            indent=2,
        )
    )
    ok = max(results["aloneA"] + results["A"]) <= 2.0 and max(results["delayB"]) <= 1.0
    print(f"targets (A <= 2 s, B delayed <= 1 s): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
