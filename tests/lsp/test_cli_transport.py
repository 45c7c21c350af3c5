"""The console script: TCP transport and a light import path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.lsp.helpers import TACTFUL


def _frame(msg: dict[str, object]) -> bytes:
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_tcp_transport_answers_initialize(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = tmp_path / "token"
    proc = subprocess.Popen(
        [TACTFUL, "serve", "--tcp", f"127.0.0.1:{port}", "--token-file", str(token_file)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        token = token_file.read_text().strip()
        conn.sendall(
            _frame(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"capabilities": {}, "initializationOptions": {"token": token}},
                }
            )
        )
        data = b""
        while b'"result"' not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        conn.close()
        assert b"inlineCompletionProvider" in data
    finally:
        proc.kill()
        proc.wait()


def test_version_does_not_import_torch() -> None:
    code = "import sys; from tactful import cli; from tactful.lsp import server; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stdio_shutdown_and_exit_leave_cleanly(tmp_path: Path) -> None:
    """shutdown + exit (what an editor sends when it stops the server) end with status 0 and
    no traceback, also when pygls has closed stdout by then."""
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    proc = subprocess.run(
        [TACTFUL, "serve"],
        input=b"".join(_frame(m) for m in msgs),
        capture_output=True,
        timeout=120,
        env={**os.environ, "TACTFUL_DATA_DIR": str(tmp_path)},
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert b'"id": 2' in proc.stdout or b'"id":2' in proc.stdout
