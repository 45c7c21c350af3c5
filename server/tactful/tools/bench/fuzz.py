"""``tactful bench fuzz [-n N] [--rounds R] [--with-model] [--seed S]``: a barrage of fuzzed
messages against the real server over stdio, with the figures of issue 28.

Each message comes from a small grammar of the JSON-RPC stream and the LSP messages tactful
handles: valid messages (documents with long lines, CR-only line ends, emoji, lone surrogates,
binary-looking text), the same with one field replaced by a value of another type (negative and
huge numbers, strings for booleans, nulls, nested junk), JSON-RPC junk (batches, bad ids, bad
``jsonrpc``, params that are not structured) and framing junk (lengths that lie, headers without
their blank line, garbage bytes, huge ``Content-Length``, invalid UTF-8, deep nesting). Settings
changes never touch ``model``: each change of it loads a model, by design.

Printed: messages tried, requests that had to be answered and were, crashes (the server process
died; it is restarted), requests not answered, user-visible messages, lost feedback events
(``--with-model``: suggestions accepted and confirmed by the server but missing from the log),
and RSS and threads after the first round and at the end (growth after the first round).
Loopback only: the server is a child process on pipes.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tactful.tools.bench.peer import Peer, frame, start

URIS = [
    "file:///fuzz/a.py",
    "file:///fuzz/b.js",
    "file:///fuzz/long.py",
    "file:///fuzz/\\ud800lone.py",  # written raw into the JSON: a lone surrogate
    "untitled:Untitled-1",
    "file:///fuzz/%F0%9F%98%80.py",
]
COMMANDS = [
    "tactful.toggle",
    "tactful.status",
    "tactful.accept",
    "tactful.reject",
    "tactful.logLocation",
    "tactful.flagDocument",
    "tactful.replayReport",
    "tactful.nonexistent",
]
REQUESTS = [
    "textDocument/completion",
    "textDocument/inlineCompletion",
    "textDocument/codeAction",
    "textDocument/diagnostic",
    "workspace/executeCommand",
    "textDocument/hover",
    "initialize",
    "tactful/unknown",
]
NOTIFICATIONS = [
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didSave",
    "textDocument/didClose",
    "textDocument/didShowCompletion",
    "textDocument/didPartiallyAcceptCompletion",
    "workspace/didChangeConfiguration",
    "$/cancelRequest",
    "$/setTrace",
]


class Grammar:
    """Random messages; ``next()`` gives (bytes to send, the id whose answer is due or None)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_id = 1000

    # --- values --------------------------------------------------------------------------------
    def text(self) -> str:
        r = self.rng
        kind = r.randrange(8)
        if kind == 0:
            return "".join(r.choice("0123456789") for _ in range(r.randrange(1, 30000)))
        if kind == 1:
            return "def f(x):\r    return x\r" * r.randrange(1, 50)  # CR-only line ends
        if kind == 2:
            return "😀漢字" * r.randrange(1, 200) + "\n"
        if kind == 3:
            return "".join(chr(r.randrange(1, 0xD7FF)) for _ in range(r.randrange(0, 300)))
        if kind == 4:
            return "\x00\x01\x02binary\x7f" * r.randrange(1, 50)
        if kind == 5:
            return ""
        return (
            "import os\n\ndef main():\n    x = os.path.join('a', 'b')\n    return x\n"
            * r.randrange(1, 20)
        )

    def junk(self, depth: int = 0) -> Any:
        r = self.rng
        k = r.randrange(12 if depth < 3 else 9)
        return [
            lambda: None,
            lambda: r.choice([True, False]),
            lambda: r.randrange(-(2**31), 2**31),
            lambda: r.choice([-1, 2**31, 2**63, -(2**63), 10**30]),
            lambda: r.random() * 1e6,
            lambda: r.choice(["", "false", "0", "x" * r.randrange(1, 5000)]),
            lambda: self.text()[:200],
            lambda: r.choice(URIS),
            lambda: 1.5,
            lambda: [self.junk(depth + 1) for _ in range(r.randrange(4))],
            lambda: {
                str(self.junk(depth + 1))[:10]: self.junk(depth + 1) for _ in range(r.randrange(3))
            },
            lambda: {"line": self.junk(depth + 1), "character": self.junk(depth + 1)},
        ][k]()

    def position(self) -> dict[str, Any]:
        r = self.rng
        return {"line": r.randrange(0, 60), "character": r.randrange(0, 200)}

    def params(self, method: str) -> Any:
        """Valid params for ``method`` (on a URI drawn first); junk for a method tactful lacks."""
        uri = self.rng.choice(URIS)
        td = {"uri": uri}
        builders: dict[str, Any] = {
            "textDocument/didOpen": self._open_params,
            "textDocument/didChange": self._change_params,
            "textDocument/didSave": self._save_params,
            "textDocument/didClose": lambda _: {"textDocument": td},
            "textDocument/diagnostic": lambda _: {"textDocument": td},
            "textDocument/completion": self._position_params,
            "textDocument/hover": self._position_params,
            "textDocument/inlineCompletion": self._inline_params,
            "textDocument/codeAction": self._code_action_params,
            "workspace/executeCommand": self._command_params,
            "textDocument/didShowCompletion": self._item_params,
            "textDocument/didPartiallyAcceptCompletion": self._item_params,
            "workspace/didChangeConfiguration": self._configuration_params,
            "$/cancelRequest": lambda _: {"id": self.rng.randrange(900, self.next_id + 1)},
            "$/setTrace": lambda _: {
                "value": self.rng.choice(["off", "messages", "verbose", "loud"])
            },
            "initialize": lambda _: {"processId": None, "rootUri": None, "capabilities": {}},
        }
        build = builders.get(method)
        return build(uri) if build is not None else {"anything": self.junk()}

    def _open_params(self, uri: str) -> dict[str, Any]:
        language = self.rng.choice(["python", "javascript", "plaintext", ""])
        doc = {"uri": uri, "languageId": language, "version": 1, "text": self.text()}
        return {"textDocument": doc}

    def _change_params(self, uri: str) -> dict[str, Any]:
        r = self.rng
        change: dict[str, Any] = {"text": self.text()[:3000]}
        if r.random() < 0.6:
            a, b = self.position(), self.position()
            change["range"] = {"start": a, "end": b}
        return {
            "textDocument": {"uri": uri, "version": r.randrange(2, 1000)},
            "contentChanges": [change],
        }

    def _save_params(self, uri: str) -> dict[str, Any]:
        td = {"uri": uri}
        return (
            {"textDocument": td, "text": self.text()[:1000]}
            if self.rng.random() < 0.5
            else {"textDocument": td}
        )

    def _position_params(self, uri: str) -> dict[str, Any]:
        return {"textDocument": {"uri": uri}, "position": self.position()}

    def _inline_params(self, uri: str) -> dict[str, Any]:
        return {
            "textDocument": {"uri": uri},
            "position": self.position(),
            "context": {"triggerKind": self.rng.choice([1, 2])},
        }

    def _code_action_params(self, uri: str) -> dict[str, Any]:
        a = self.position()
        return {
            "textDocument": {"uri": uri},
            "range": {"start": a, "end": a},
            "context": {"diagnostics": []},
        }

    def _command_params(self, uri: str) -> dict[str, Any]:
        r = self.rng
        cmd = r.choice(COMMANDS)
        args = r.choice([[], [True], [False], ["x"], [uri], ["id", 3], [self.junk()]])
        return {"command": cmd, "arguments": args}

    def _item_params(self, uri: str) -> dict[str, Any]:
        item = {
            "insertText": "x",
            "command": {"title": "a", "command": "tactful.accept", "arguments": ["nope"]},
        }
        return {"item": item, "acceptedLength": self.rng.randrange(-5, 50)}

    def _configuration_params(self, uri: str) -> dict[str, Any]:
        key = self.rng.choice(["enable", "completion", "feedback", "x"])
        return {"settings": {"tactful": {key: self.junk()}}}

    def mutate(self, obj: Any) -> Any:
        """``obj`` with one field (at any depth) replaced by junk, or removed."""
        r = self.rng
        if isinstance(obj, dict) and obj:
            k = r.choice(list(obj))
            if r.random() < 0.4 or not isinstance(obj[k], dict | list):
                out = dict(obj)
                if r.random() < 0.2:
                    del out[k]
                else:
                    out[k] = self.junk()
                return out
            return {**obj, k: self.mutate(obj[k])}
        if isinstance(obj, list) and obj:
            i = r.randrange(len(obj))
            return [*obj[:i], self.mutate(obj[i]), *obj[i + 1 :]]
        return self.junk()

    # --- messages ------------------------------------------------------------------------------
    def _dump(self, obj: Any) -> bytes:
        body = json.dumps(obj)
        # a lone surrogate, written as JSON does: "\ud800"
        return body.replace("\\\\ud800", "\\ud800").encode()

    def next(self) -> tuple[bytes, Any]:
        """One message: an LSP message (65 %), JSON-RPC junk (15 %) or framing junk (20 %)."""
        roll = self.rng.random()
        if roll < 0.65:
            return self._lsp_message(roll)
        if roll < 0.8:
            return self._jsonrpc_junk()
        return self._framing_junk(), None

    def _lsp_message(self, roll: float) -> tuple[bytes, Any]:
        """An LSP request or notification, valid or (``roll`` > 0.4) with one field mutated."""
        r = self.rng
        request = r.random() < 0.5
        method = r.choice(REQUESTS if request else NOTIFICATIONS)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": self.params(method)}
        if roll > 0.4:
            msg = (
                self.mutate(msg)
                if r.random() < 0.3
                else {**msg, "params": self.mutate(msg["params"])}
            )
        due = None
        if request:
            self.next_id += 1
            msg = {"id": self.next_id if r.random() < 0.8 else f"s{self.next_id}", **msg}
        if isinstance(msg, dict) and "method" in msg and "id" in msg:
            mid = msg["id"]
            if (isinstance(mid, int) and not isinstance(mid, bool)) or isinstance(mid, str):
                due = mid
        return frame(self._dump(msg)), due

    def _jsonrpc_junk(self) -> tuple[bytes, Any]:
        """A correctly framed message JSON-RPC must reject, and the id whose answer is due."""
        self.next_id += 1
        i = self.next_id
        options: list[tuple[Any, Any]] = [
            ([{"jsonrpc": "2.0", "id": i, "method": "shutdown"}], None),
            ({"jsonrpc": "1.0", "id": i, "method": "tactful/x"}, i),
            ({"jsonrpc": "2.0", "id": i, "method": 5}, i),
            (
                {"jsonrpc": "2.0", "id": i, "method": "workspace/executeCommand", "params": "str"},
                i,
            ),
            ({"jsonrpc": "2.0", "id": i}, i),
            ({"jsonrpc": "2.0", "id": [i], "method": "x"}, None),
            ({"jsonrpc": "2.0", "id": 1.5, "method": "x"}, None),
            ({"jsonrpc": "2.0", "id": True, "method": "x"}, None),
            (self.junk(), None),
            ({"jsonrpc": "2.0", "id": i, "result": None}, None),
            ({"jsonrpc": "2.0", "id": i, "method": "x", "params": [1, 2]}, i),
        ]
        obj, due = self.rng.choice(options)
        return frame(json.dumps(obj).encode()), due

    def _framing_junk(self) -> bytes:
        """Bytes that break the framing (nothing is due): lengths that lie, bad headers,
        garbage, huge lengths, invalid UTF-8, deep nesting."""
        r = self.rng
        body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tactful/x"}).encode()
        options = [
            b"Content-Length: %d\r\n\r\n%s" % (len(body) + r.randrange(1, 500), body),
            b"Content-Length: %d\r\n\r\n%s" % (max(1, len(body) - r.randrange(1, 20)), body),
            b"Content-Length: 5\r\nGARBAGE",
            b"Content-Length: abc\r\n\r\n",
            b"Content-Length: %d\r\n\r\n" % r.choice([10**12, 2**63, 2**64 + 1, 10**40]),
            bytes(r.randrange(256) for _ in range(r.randrange(1, 400))),
            frame(b'{"jsonrpc": "2.0", "id": 1, "method": "\xff\xfe"}'),
            frame(b"{not json"),
            frame(b"[" * r.randrange(100, 100000)),
            frame(b'{"a": ' + b"1" * 5000 + b"}"),
            frame(b'{"jsonrpc": "2.0", "id": 1, "method": "x", "params": NaN}'),
            b"Content-Length: 0\r\n\r\n",
            b"\r\n\r\n\r\n",
        ]
        return r.choice(options)


VALID_DOC = "file:///fuzz/valid.py"
VALID_TEXT = "import os\n\n\ndef read_config(path):\n    with open(path) as fh:\n        "


def accept_one(peer: Peer, k: int) -> bool:
    """A real suggestion on a valid document, accepted; True when the server confirmed it."""
    text = VALID_TEXT + f"# {k}\n    "
    open_msg = {
        "jsonrpc": "2.0",
        "method": "textDocument/didOpen",
        "params": {
            "textDocument": {"uri": VALID_DOC, "languageId": "python", "version": k, "text": text}
        },
    }
    close_msg = {
        "jsonrpc": "2.0",
        "method": "textDocument/didClose",
        "params": {"textDocument": {"uri": VALID_DOC}},
    }
    peer.send(frame(json.dumps(close_msg).encode()) + frame(json.dumps(open_msg).encode()))
    lines = text.split("\n")
    pos = {"line": len(lines) - 1, "character": len(lines[-1])}
    r = peer.request(
        f"c{k}",
        "textDocument/inlineCompletion",
        {"textDocument": {"uri": VALID_DOC}, "position": pos, "context": {"triggerKind": 1}},
        timeout=120,
    )
    items = (r or {}).get("result") or {}
    items = items.get("items", []) if isinstance(items, dict) else []
    if not items:
        return False
    sid = items[0]["command"]["arguments"][0]
    a = peer.request(
        f"a{k}", "workspace/executeCommand", {"command": "tactful.accept", "arguments": [sid]}
    )
    return bool(a and isinstance(a.get("result"), dict) and a["result"].get("ok"))


def _parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="tactful bench fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="fuzzed messages in all (default 2000)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=28)
    ap.add_argument(
        "--with-model",
        action="store_true",
        help="load the model; accept a real suggestion each round and count lost feedback events",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds a round's requests may take to be answered",
    )
    return ap.parse_args(argv)


@dataclass
class Tally:
    """What the barrage counted so far."""

    tried: int = 0
    due: int = 0
    answered: int = 0
    crashes: int = 0
    confirmed: int = 0
    unanswered: list[Any] = field(default_factory=list)


def _round(peer: Peer, g: Grammar, rnd: int, per_round: int, timeout: float, t: Tally) -> None:
    """Send one round of fuzzed messages, then a valid ``tactful.status`` request (the stream is
    in sync and the server answers); count the requests due and answered."""
    due: list[Any] = []
    for _ in range(per_round):
        data, mid = g.next()
        t.tried += 1
        if mid is not None:
            due.append(mid)
        if not peer.send(data):
            break
    sentinel = f"sentinel{rnd}"
    sent_ok = peer.request(
        sentinel,
        "workspace/executeCommand",
        {"command": "tactful.status", "arguments": []},
        timeout=timeout,
    )
    got = peer.wait(due, timeout)
    t.due += len(due) + 1
    t.answered += len(got) + (1 if sent_ok and "state" in (sent_ok.get("result") or {}) else 0)
    t.unanswered += [i for i in due if i not in got] + ([] if sent_ok else [sentinel])


def _accepts_logged(db: Path) -> int:
    """Accept events in the feedback log at ``db`` (0 when there is no log)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'accepted'").fetchone()[0]
        )
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    g = Grammar(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="tactful-fuzz-"))
    log_path = tmp / "server.log"
    t0 = time.monotonic()
    peer = start(tmp / "data", log_path, args.with_model)
    rss0, thr0 = peer.rss_threads()
    t = Tally()
    rss1 = thr1 = 0
    per_round = max(1, args.n // args.rounds)
    for rnd in range(args.rounds):
        _round(peer, g, rnd, per_round, args.timeout, t)
        if not peer.alive():
            t.crashes += 1
            print(
                f"round {rnd}: the server died (exit {peer.proc.returncode}); restarting",
                file=sys.stderr,
            )
            peer = start(tmp / "data", log_path, args.with_model)
        elif args.with_model and accept_one(peer, rnd):
            t.confirmed += 1
        if rnd == 0:
            rss1, thr1 = peer.rss_threads()
        print(
            f"round {rnd + 1}/{args.rounds}: {t.tried} tried, {t.answered}/{t.due} answered, rss {peer.rss_threads()[0] / 1024:.0f} MB",
            file=sys.stderr,
        )
    rss2, thr2 = peer.rss_threads()
    shows = sum(1 for n in peer.notifications if n.get("method") == "window/showMessage")
    peer.close()
    lost: int | None = None
    if args.with_model:
        lost = max(0, t.confirmed - _accepts_logged(tmp / "data" / "feedback.sqlite3"))
    growth = (rss2 - rss1) / rss1 * 100 if rss1 else float("nan")
    out = {
        "messages": t.tried,
        "requestsDue": t.due,
        "answered": t.answered,
        "unanswered": len(t.unanswered),
        "crashes": t.crashes,
        "showMessages": shows,
        "acceptsConfirmed": t.confirmed if args.with_model else None,
        "lostEvents": lost,
        "rssMb": {
            "start": round(rss0 / 1024),
            "afterRound1": round(rss1 / 1024),
            "end": round(rss2 / 1024),
        },
        "rssGrowthAfterRound1Pct": round(growth, 2),
        "threads": {"start": thr0, "afterRound1": thr1, "end": thr2},
        "seconds": round(time.monotonic() - t0, 1),
        "serverLog": str(log_path),
    }
    print(json.dumps(out, indent=2))
    if t.unanswered:
        print(f"unanswered ids (first 10): {t.unanswered[:10]}", file=sys.stderr)
    return 0 if not t.crashes and not t.unanswered and not lost else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
