"""A raw LSP peer for the fuzz and fault tests: bytes in, framed JSON out, over the real
``tactful serve`` process (stdio or a loopback socket)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TACTFUL = str(Path(sys.executable).parent / "tactful")
_CL = re.compile(rb"Content-Length: (\d+)\r\n")


def frame(msg: Any) -> bytes:
    body = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def initialize(msg_id: Any = 0, options: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"processId": None, "rootUri": None, "capabilities": {}}
    if options is not None:
        params["initializationOptions"] = options
    return {"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": params}


class Messages:
    """Frames parsed from a byte stream by a reader thread, on a queue."""

    def __init__(self, read: Any) -> None:
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._read = read
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._read(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.q.put(None)
                return
            buf += chunk
            while True:
                m = _CL.search(buf)
                if m is None:
                    break
                end = buf.find(b"\r\n\r\n", m.start())
                if end < 0:
                    break
                n = int(m.group(1))
                if len(buf) < end + 4 + n:
                    break
                self.q.put(json.loads(buf[end + 4 : end + 4 + n]))
                buf = buf[end + 4 + n :]

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        if msg is not None:
            self.seen.append(msg)
        return msg

    def response(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any] | None:
        for m in self.seen:
            if "method" not in m and m.get("id") == msg_id:
                return m
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            m = self.next(left)
            if m is None:
                return None
            if "method" not in m and m.get("id") == msg_id:
                return m
        return None

    def drain(self, quiet_s: float = 0.3) -> None:
        while self.next(quiet_s) is not None:
            pass


class StdioServer:
    """``tactful serve`` over pipes; stderr goes to a file."""

    def __init__(
        self, tmp: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.stderr_path = tmp / f"server-{time.monotonic_ns()}.log"
        full = {**os.environ, "TACTFUL_DATA_DIR": str(tmp / "data"), **(env or {})}
        self.proc = subprocess.Popen(
            [TACTFUL, "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("wb"),
            env=full,
        )
        assert self.proc.stdout is not None
        self.msgs = Messages(self.proc.stdout.read1)

    def send(self, data: bytes | dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data if isinstance(data, bytes) else frame(data))
        self.proc.stdin.flush()

    def request(
        self, msg_id: Any, method: str, params: Any = None, timeout: float = 30.0
    ) -> dict[str, Any] | None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.msgs.response(msg_id, timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def rss_kb(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
