"""The client side of the stdio benchmarks (``tactful bench fuzz``, ``tactful bench longline``):
``tactful serve`` as a child process on pipes, raw framed messages in, answers collected by id.

Deliberately not an LSP client library: the fuzz barrage must be able to send bytes no library
would (broken framing, invalid JSON), and the figures must count every answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_CL = re.compile(rb"Content-Length: (\d+)\r\n")


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


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


def start(
    data_dir: Path, log_path: Path, with_model: bool, options: dict[str, Any] | None = None
) -> Peer:
    """A server, initialized (flags off, plus ``options``); with the model loaded and ready
    when ``with_model``."""
    peer = Peer(data_dir, log_path)
    init = {
        "processId": None,
        "rootUri": None,
        "capabilities": {},
        "initializationOptions": {"flags": {"enable": False}, **(options or {})},
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
