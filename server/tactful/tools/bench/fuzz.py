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
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_CL = re.compile(rb"Content-Length: (\d+)\r\n")

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


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


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
        r = self.rng
        uri = r.choice(URIS)
        td = {"uri": uri}
        if method == "textDocument/didOpen":
            return {
                "textDocument": {
                    "uri": uri,
                    "languageId": r.choice(["python", "javascript", "plaintext", ""]),
                    "version": 1,
                    "text": self.text(),
                }
            }
        if method == "textDocument/didChange":
            change: dict[str, Any] = {"text": self.text()[:3000]}
            if r.random() < 0.6:
                a, b = self.position(), self.position()
                change["range"] = {"start": a, "end": b}
            return {
                "textDocument": {"uri": uri, "version": r.randrange(2, 1000)},
                "contentChanges": [change],
            }
        if method == "textDocument/didSave":
            return (
                {"textDocument": td, "text": self.text()[:1000]}
                if r.random() < 0.5
                else {"textDocument": td}
            )
        if method == "textDocument/didClose":
            return {"textDocument": td}
        if method in ("textDocument/completion", "textDocument/hover"):
            return {"textDocument": td, "position": self.position()}
        if method == "textDocument/inlineCompletion":
            return {
                "textDocument": td,
                "position": self.position(),
                "context": {"triggerKind": r.choice([1, 2])},
            }
        if method == "textDocument/codeAction":
            a = self.position()
            return {
                "textDocument": td,
                "range": {"start": a, "end": a},
                "context": {"diagnostics": []},
            }
        if method == "textDocument/diagnostic":
            return {"textDocument": td}
        if method == "workspace/executeCommand":
            cmd = r.choice(COMMANDS)
            args = r.choice([[], [True], [False], ["x"], [uri], ["id", 3], [self.junk()]])
            return {"command": cmd, "arguments": args}
        if method in (
            "textDocument/didShowCompletion",
            "textDocument/didPartiallyAcceptCompletion",
        ):
            item = {
                "insertText": "x",
                "command": {"title": "a", "command": "tactful.accept", "arguments": ["nope"]},
            }
            return {"item": item, "acceptedLength": r.randrange(-5, 50)}
        if method == "workspace/didChangeConfiguration":
            return {
                "settings": {
                    "tactful": {r.choice(["enable", "completion", "feedback", "x"]): self.junk()}
                }
            }
        if method == "$/cancelRequest":
            return {"id": r.randrange(900, self.next_id + 1)}
        if method == "$/setTrace":
            return {"value": r.choice(["off", "messages", "verbose", "loud"])}
        if method == "initialize":
            return {"processId": None, "rootUri": None, "capabilities": {}}
        return {"anything": self.junk()}

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
        r = self.rng
        roll = r.random()
        if roll < 0.65:  # an LSP message, valid or with one field mutated
            request = r.random() < 0.5
            method = r.choice(REQUESTS if request else NOTIFICATIONS)
            msg: dict[str, Any] = {
                "jsonrpc": "2.0",
                "method": method,
                "params": self.params(method),
            }
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
        if roll < 0.8:  # JSON-RPC junk, correctly framed
            self.next_id += 1
            i = self.next_id
            options: list[tuple[Any, Any]] = [
                ([{"jsonrpc": "2.0", "id": i, "method": "shutdown"}], None),
                ({"jsonrpc": "1.0", "id": i, "method": "tactful/x"}, i),
                ({"jsonrpc": "2.0", "id": i, "method": 5}, i),
                (
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "workspace/executeCommand",
                        "params": "str",
                    },
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
            obj, due = r.choice(options)
            return frame(json.dumps(obj).encode()), due
        # framing junk; nothing is due
        body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tactful/x"}).encode()
        options_b = [
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
        return r.choice(options_b), None


class Peer:
    """``tactful serve`` over pipes; a thread collects the responses by id."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        env = {**os.environ, "TACTFUL_DATA_DIR": str(data_dir)}
        exe = Path(sys.executable).parent / "tactful"
        cmd = (
            [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "tactful.cli", "serve"]
        )
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_path.open("ab"), env=env
        )
        self.answers: dict[Any, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.cv = threading.Condition()
        self.done = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(1 << 16)  # type: ignore[attr-defined]
            if not chunk:
                with self.cv:
                    self.done = True
                    self.cv.notify_all()
                return
            buf += chunk
            while (m := _CL.search(buf)) is not None:
                end = buf.find(b"\r\n\r\n", m.start())
                n = int(m.group(1))
                if end < 0 or len(buf) < end + 4 + n:
                    break
                msg = json.loads(buf[end + 4 : end + 4 + n])
                buf = buf[end + 4 + n :]
                with self.cv:
                    if "method" in msg:
                        self.notifications.append(msg)
                    else:
                        self.answers.setdefault(msg.get("id"), msg)
                    self.cv.notify_all()

    def send(self, data: bytes) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def request(
        self, msg_id: Any, method: str, params: Any = None, timeout: float = 60
    ) -> dict[str, Any] | None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(frame(json.dumps(msg).encode()))
        return self.wait([msg_id], timeout).get(msg_id)

    def wait(self, ids: list[Any], timeout: float) -> dict[Any, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not all(i in self.answers for i in ids) and not self.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            return {i: self.answers[i] for i in ids if i in self.answers}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_threads(self) -> tuple[int, int]:
        rss = threads = 0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        except OSError:
            pass
        return rss, threads

    def close(self) -> None:
        if self.alive():
            self.send(frame(b'{"jsonrpc": "2.0", "id": "bye", "method": "shutdown"}'))
            self.wait(["bye"], 30)
            self.send(frame(b'{"jsonrpc": "2.0", "method": "exit"}'))
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


VALID_DOC = "file:///fuzz/valid.py"
VALID_TEXT = "import os\n\n\ndef read_config(path):\n    with open(path) as fh:\n        "


def start(data_dir: Path, log_path: Path, with_model: bool) -> Peer:
    peer = Peer(data_dir, log_path)
    init = {
        "processId": None,
        "rootUri": None,
        "capabilities": {},
        "initializationOptions": {"flags": {"enable": False}},
    }
    r = peer.request("init", "initialize", init, timeout=120)
    if r is None or "result" not in r:
        raise RuntimeError(f"the server did not initialize: {r}")
    if with_model:
        peer.send(frame(b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}'))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with peer.cv:
                states = [
                    n["params"].get("state")
                    for n in peer.notifications
                    if n.get("method") == "tactful/status"
                ]
            if states and states[-1] in ("ready", "failed"):
                break
            time.sleep(0.5)
    return peer


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


def main(argv: list[str]) -> int:
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
    args = ap.parse_args(argv)
    g = Grammar(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="tactful-fuzz-"))
    log_path = tmp / "server.log"
    t0 = time.monotonic()
    peer = start(tmp / "data", log_path, args.with_model)
    rss0, thr0 = peer.rss_threads()
    tried = due_n = answered = crashes = 0
    unanswered: list[Any] = []
    confirmed = 0
    rss1 = thr1 = 0
    per_round = max(1, args.n // args.rounds)
    for rnd in range(args.rounds):
        due: list[Any] = []
        for _ in range(per_round):
            data, mid = g.next()
            tried += 1
            if mid is not None:
                due.append(mid)
            if not peer.send(data):
                break
        # a valid request at the end of the round: the stream is in sync and the server answers
        sentinel = f"sentinel{rnd}"
        sent_ok = peer.request(
            sentinel,
            "workspace/executeCommand",
            {"command": "tactful.status", "arguments": []},
            timeout=args.timeout,
        )
        got = peer.wait(due, args.timeout)
        due_n += len(due) + 1
        answered += len(got) + (1 if sent_ok and "state" in (sent_ok.get("result") or {}) else 0)
        unanswered += [i for i in due if i not in got] + ([] if sent_ok else [sentinel])
        if not peer.alive():
            crashes += 1
            print(
                f"round {rnd}: the server died (exit {peer.proc.returncode}); restarting",
                file=sys.stderr,
            )
            peer = start(tmp / "data", log_path, args.with_model)
        elif args.with_model and accept_one(peer, rnd):
            confirmed += 1
        if rnd == 0:
            rss1, thr1 = peer.rss_threads()
        print(
            f"round {rnd + 1}/{args.rounds}: {tried} tried, {answered}/{due_n} answered, rss {peer.rss_threads()[0] / 1024:.0f} MB",
            file=sys.stderr,
        )
    rss2, thr2 = peer.rss_threads()
    shows = sum(1 for n in peer.notifications if n.get("method") == "window/showMessage")
    peer.close()
    lost: int | None = None
    if args.with_model:
        db = tmp / "data" / "feedback.sqlite3"
        n_acc = 0
        if db.exists():
            conn = sqlite3.connect(db)
            n_acc = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'accepted'").fetchone()[
                0
            ]
            conn.close()
        lost = max(0, confirmed - n_acc)
    growth = (rss2 - rss1) / rss1 * 100 if rss1 else float("nan")
    out = {
        "messages": tried,
        "requestsDue": due_n,
        "answered": answered,
        "unanswered": len(unanswered),
        "crashes": crashes,
        "showMessages": shows,
        "acceptsConfirmed": confirmed if args.with_model else None,
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
    if unanswered:
        print(f"unanswered ids (first 10): {unanswered[:10]}", file=sys.stderr)
    return 0 if not crashes and not unanswered and not lost else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
