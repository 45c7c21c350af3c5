"""TCP mode (loopback only): a token is required, one editor at a time, the others are refused
with an answer, and a refused or unauthenticated connection never ends the server."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.fuzz.wire import TACTFUL, Messages, frame, initialize


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Conn:
    def __init__(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.msgs = Messages(self.sock.recv)

    def request(self, msg: dict[str, Any], timeout: float = 30) -> dict[str, Any] | None:
        self.sock.sendall(frame(msg))
        return self.msgs.response(msg["id"], timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a recv blocked in the reader thread would hold it
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_tcp_token_one_client_at_a_time(tmp_path: Path) -> None:
    port = _port()
    token_file = tmp_path / "token"
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [TACTFUL, "serve", "--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file)],
        stderr=log,
        env={**os.environ, "TACTFUL_DATA_DIR": str(tmp_path / "data")},
    )
    try:
        # No token: refused with an answer, and the server goes on.
        anon = Conn(port)
        r = anon.request(initialize(1))
        assert r is not None and "Authentication failed" in r["error"]["message"]
        anon.close()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        bad = Conn(port)
        r = bad.request(initialize(1, {"token": token[:-1] + "x"}))
        assert r is not None and "error" in r
        bad.close()
        time.sleep(0.3)
        assert proc.poll() is None

        a = Conn(port)
        r = a.request(initialize(1, {"token": token}))
        assert r is not None and "capabilities" in r["result"], r
        # A second editor while the first is connected: an answer, then the door closes.
        b = Conn(port)
        r = b.request(initialize(7, {"token": token}))
        assert r is not None and "another editor" in r["error"]["message"]
        b.close()
        time.sleep(0.3)
        assert proc.poll() is None
        r = a.request(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "workspace/executeCommand",
                "params": {"command": "tactful.status"},
            }
        )
        assert r is not None and "state" in r["result"], r
        # The responses meant for a went to a only.
        assert all(m.get("id") in (None, 1, 2) for m in a.msgs.seen)
        a.close()
        proc.wait(timeout=30)  # the editor that initialized it left: the server ends
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
