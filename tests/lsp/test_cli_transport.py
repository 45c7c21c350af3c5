"""The console script: TCP transport and a light import path."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from tests.lsp.helpers import TACTFUL


def test_tcp_transport_answers_initialize() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [TACTFUL, "serve", "--tcp", f"127.0.0.1:{port}"], stderr=subprocess.PIPE
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
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
        )
        conn.sendall(f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
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
    code = "import sys; from tactful import cli, server; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
